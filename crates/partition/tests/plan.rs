//! The example configurations, layout and plan validation.

use partition::{
    ChannelKind, ChannelMap, Config, Console, Error, GIB, GuestConflict, GuestRegion, Image, KIB,
    MIB, Machine, Memory, Owner, PhysRange, Plan, Sandbox, from_toml_str, plan,
};

fn read(name: &str) -> String {
    let path = format!("{}/../../configs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn example(name: &str) -> (Config, Machine, Plan) {
    let config = from_toml_str(&read(name)).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let machine = config.machine.expect("the examples name their machine");
    let plan = config
        .plan(&machine, &[])
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    (config, machine, plan)
}

#[test]
fn two_quest_parses_validates_and_plans() {
    let (config, machine, plan) = example("two-quest.toml");
    assert_eq!(
        machine,
        Machine {
            cpus: 2,
            memory_bytes: 512 * MIB
        }
    );
    assert_eq!(config.monitor_memory, Some(Memory::Size(64 * MIB)));
    assert_eq!(config.sandboxes.len(), 2);
    assert_eq!(config.sandboxes[0].console, Console::Com(1));
    assert_eq!(config.channels[0].key, 153);
    assert_eq!(config.channels[0].kind, Some(ChannelKind::Async));

    // Monitor first, then the sandboxes in order, then the shared area, all from 2 MiB.
    assert_eq!(plan.monitor, Some(PhysRange::new(2 * MIB, 66 * MIB)));
    let q0 = plan.sandbox("quest0").unwrap();
    let q1 = plan.sandbox("quest1").unwrap();
    assert_eq!((q0.id, q0.asid(), q0.cpus.as_slice()), (0, 1, &[0][..]));
    assert_eq!(q0.ram, PhysRange::new(66 * MIB, 194 * MIB));
    assert_eq!(q1.ram, PhysRange::new(194 * MIB, 322 * MIB));
    let ch = plan.channel(153).unwrap();
    assert_eq!(ch.phys, PhysRange::new(322 * MIB, 322 * MIB + 4 * KIB));
    let ch2 = plan.channel(154).unwrap();
    assert_eq!(ch2.phys, PhysRange::new(322 * MIB + 4 * KIB, 322 * MIB + 8 * KIB));
    // Each sandbox sees the channel right after its 128 MiB of RAM.
    assert_eq!(
        ch.maps,
        [
            ChannelMap {
                sandbox: 0,
                guest: 128 * MIB
            },
            ChannelMap {
                sandbox: 1,
                guest: 128 * MIB
            }
        ]
    );
    assert_eq!(
        plan.sandbox_of_cpu(1).map(|s| s.name.as_str()),
        Some("quest1")
    );
    assert_eq!(
        plan.channels_of(1)
            .map(|(c, g)| (c.key, g))
            .collect::<Vec<_>>(),
        [(153, 128 * MIB), (154, 128 * MIB + 4 * KIB)]
    );

    plan.validate(&machine).unwrap();
    assert_eq!(Plan::decode(&plan.encode()).unwrap(), plan);
}

#[test]
fn quest_v_example_parses_validates_and_plans() {
    let (config, machine, plan) = example("quest-v-example.toml");
    assert_eq!(
        machine,
        Machine {
            cpus: 4,
            memory_bytes: 2 * GIB
        }
    );
    let names: Vec<&str> = config.sandboxes.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["rt0", "rt1", "linux"]);
    assert_eq!(config.sandboxes[0].image, Image::Quest);
    assert!(
        matches!(&config.sandboxes[2].image, Image::Linux { kernel, initrd: Some(_), .. } if kernel == "vmlinux")
    );

    // The seed's async_send (Quest) / async_recv (Linux) channel.
    let ch = plan.channel(153).unwrap();
    let mapped: Vec<&str> = ch
        .maps
        .iter()
        .map(|m| plan.sandboxes[usize::from(m.sandbox)].name.as_str())
        .collect();
    assert_eq!(mapped, ["rt0", "linux"]);
    assert!(
        plan.channels_of(1).next().is_none(),
        "rt1 does not map channel 153"
    );

    // Every CPU of the machine is used exactly once.
    let mut cpus: Vec<u32> = plan
        .sandboxes
        .iter()
        .flat_map(|s| s.cpus.iter().copied())
        .collect();
    cpus.sort();
    assert_eq!(cpus, [0, 1, 2, 3]);

    plan.validate(&machine).unwrap();
    assert_eq!(Plan::decode(&plan.encode()).unwrap(), plan);
}

#[test]
fn examples_survive_to_toml() {
    for name in ["two-quest.toml", "quest-v-example.toml"] {
        let config = from_toml_str(&read(name)).unwrap();
        let again = from_toml_str(&config.to_toml())
            .unwrap_or_else(|e| panic!("{e:?}\n{}", config.to_toml()));
        assert_eq!(again, config, "{name}");
    }
}

#[test]
fn examples_refuse_a_smaller_machine() {
    let config = from_toml_str(&read("quest-v-example.toml")).unwrap();
    let errs = config
        .plan(
            &Machine {
                cpus: 2,
                memory_bytes: 512 * MIB,
            },
            &[],
        )
        .unwrap_err();
    let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        msgs,
        [
            "sandbox 'rt1' cpu 2 is beyond the machine, which has 2 CPUs",
            "sandbox 'linux' cpu 3 is beyond the machine, which has 2 CPUs",
            "the sandboxes, channels and monitor need 983044 KiB in total but the machine has 512 MiB",
        ]
    );
}

#[test]
fn layout_avoids_reserved_ranges_and_explicit_ranges() {
    let config = Config {
        monitor_memory: Some(Memory::Range(PhysRange::new(MIB, 3 * MIB))),
        sandboxes: vec![
            Sandbox {
                memory: Memory::Range(PhysRange::new(64 * MIB, 128 * MIB)),
                ..Sandbox::quest("fixed", &[0], 0)
            },
            Sandbox::quest("a", &[1], 60 * MIB),
            Sandbox::quest("b", &[2], 32 * MIB),
        ],
        channels: vec![
            partition::Channel {
                key: 1,
                size: 8 * KIB,
                kind: None,
                sandboxes: vec!["a".into(), "b".into()],
            },
            partition::Channel {
                key: 2,
                size: 4 * KIB,
                kind: Some(ChannelKind::Sync),
                sandboxes: vec!["b".into(), "fixed".into(), "a".into()],
            },
        ],
        machine: None,
    };
    let machine = Machine {
        cpus: 3,
        memory_bytes: 512 * MIB,
    };
    let reserved = [PhysRange::new(4 * MIB, 5 * MIB)];
    let plan = plan(&config, &machine, &reserved).unwrap();
    assert_eq!(plan.monitor, Some(PhysRange::new(MIB, 3 * MIB)));
    // 'a' (60 MiB) does not fit 6..64 MiB (58 MiB), so goes after 'fixed'; 'b' fills the gap.
    assert_eq!(plan.sandboxes[1].ram, PhysRange::new(128 * MIB, 188 * MIB));
    assert_eq!(plan.sandboxes[2].ram, PhysRange::new(6 * MIB, 38 * MIB));
    // The shared area: the lowest 2 MiB aligned 12 KiB left (38 MiB), channels back to back.
    assert_eq!(
        plan.channels[0].phys,
        PhysRange::new(38 * MIB, 38 * MIB + 8 * KIB)
    );
    assert_eq!(
        plan.channels[1].phys,
        PhysRange::new(38 * MIB + 8 * KIB, 38 * MIB + 12 * KIB)
    );
    // Windows: per sandbox after its RAM, in channel order.
    assert_eq!(
        plan.channels[1].maps,
        [
            ChannelMap {
                sandbox: 2,
                guest: 32 * MIB + 8 * KIB
            },
            ChannelMap {
                sandbox: 0,
                guest: 64 * MIB
            },
            ChannelMap {
                sandbox: 1,
                guest: 60 * MIB + 8 * KIB
            },
        ]
    );
    plan.validate_with_reserved(&machine, &reserved).unwrap();
}

#[test]
fn guest_ram_skips_the_pci_hole_and_windows_avoid_it() {
    let config = Config {
        sandboxes: vec![
            Sandbox::quest("big", &[0], 3 * GIB + 512 * MIB),
            Sandbox::quest("edge", &[1], 3 * GIB - 2 * MIB),
        ],
        channels: vec![partition::Channel {
            key: 9,
            size: 4 * MIB,
            kind: None,
            sandboxes: vec!["big".into(), "edge".into()],
        }],
        ..Config::default()
    };
    let machine = Machine {
        cpus: 2,
        memory_bytes: 8 * GIB,
    };
    let plan = config.plan(&machine, &[]).unwrap();
    let big = &plan.sandboxes[0];
    let regions: Vec<GuestRegion> = big.guest_ram().collect();
    assert_eq!(
        regions,
        [
            GuestRegion {
                guest: 0,
                host: big.ram.start,
                len: 3 * GIB
            },
            GuestRegion {
                guest: 4 * GIB,
                host: big.ram.start + 3 * GIB,
                len: 512 * MIB
            },
        ]
    );
    // 'big' sees the channel after its high RAM; 'edge' would cross into the hole, so at 4 GiB.
    let maps = &plan.channels[0].maps;
    assert_eq!(maps[0].guest, 4 * GIB + 512 * MIB);
    assert_eq!(maps[1].guest, 4 * GIB);
}

fn valid_plan() -> (Plan, Machine) {
    let (_, machine, plan) = example("quest-v-example.toml");
    (plan, machine)
}

fn messages(r: Result<(), Vec<Error>>) -> Vec<String> {
    r.err()
        .unwrap_or_default()
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn plan_validation_catches_tampering() {
    let (good, machine) = valid_plan();

    let mut p = good.clone();
    p.sandboxes[1].id = 7;
    assert_eq!(messages(p.validate(&machine)), ["sandbox #1 carries id 7"]);

    let mut p = good.clone();
    p.sandboxes[1].ram = p.sandboxes[0].ram;
    let e = messages(p.validate(&machine));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("sandbox 'rt1' memory") && e[0].contains("overlaps sandbox 'rt0'"),
        "{e:?}"
    );

    let mut p = good.clone();
    p.sandboxes[1].cpus.push(0);
    assert_eq!(
        messages(p.validate(&machine)),
        ["cpu 0 is assigned to both 'rt0' and 'rt1'"]
    );

    let mut p = good.clone();
    p.channels[0].maps[1].sandbox = 9;
    assert_eq!(
        messages(p.validate(&machine)),
        [
            "channel 153 maps unknown sandbox id 9",
            "channel 153 names 1 sandbox; a channel joins at least two"
        ]
    );

    let mut p = good.clone();
    p.channels[0].maps[0].guest = 0x1000;
    assert_eq!(
        messages(p.validate(&machine)),
        [
            "channel 153 guest window 0x1000..0x2000 in sandbox 'rt0' overlaps its RAM at 0x0..0x1000_0000"
        ]
    );

    let mut p = good.clone();
    p.channels[0].maps[0].guest = 0xbfff_f000 + 0x10;
    let e = messages(p.validate(&machine));
    assert_eq!(
        e[0],
        "channel 153 guest address 0xbfff_f010 in sandbox 'rt0' is not 4 KiB aligned"
    );
    assert_eq!(
        e[1],
        "channel 153 guest window 0xbfff_f010..0xc000_0010 in sandbox 'rt0' overlaps the guest PCI hole \
         0xc000_0000..0x1_0000_0000"
    );

    let mut p = good.clone();
    p.channels[0].maps[0].guest = !0xfff;
    let errs = p.validate(&machine).unwrap_err();
    assert!(
        matches!(
            &errs[..],
            [Error::GuestConflict {
                with: GuestConflict::Limit,
                ..
            }]
        ),
        "{errs:?}"
    );

    let mut p = good.clone();
    p.channels[0].phys = PhysRange::new(0x1000, 0x2000);
    assert_eq!(
        messages(p.validate(&machine)),
        ["channel 153 0x1000..0x2000 overlaps the low 1 MiB 0x0..0x10_0000"]
    );

    let mut p = good.clone();
    p.channels.push(p.channels[0].clone());
    let e = messages(p.validate(&machine));
    assert!(
        e.contains(&"channel key 153 is used twice".to_string()),
        "{e:?}"
    );

    // The monitor at boot: its own image is a reserved range the plan must not touch.
    let monitor_image = PhysRange::new(
        good.sandboxes[0].ram.start,
        good.sandboxes[0].ram.start + MIB,
    );
    let errs = good
        .validate_with_reserved(&machine, &[monitor_image])
        .unwrap_err();
    assert!(
        matches!(&errs[..], [Error::Overlap { a: Owner::Sandbox(n), b: Owner::Reserved, .. }] if n == "rt0"),
        "{errs:?}"
    );

    // And against a smaller machine than the blob was made for.
    let small = Machine {
        cpus: 2,
        memory_bytes: 256 * MIB,
    };
    let e = messages(good.validate(&small));
    assert!(
        e.iter()
            .any(|m| m == "sandbox 'linux' cpu 3 is beyond the machine, which has 2 CPUs"),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("is beyond the machine's memory")),
        "{e:?}"
    );
}

#[test]
fn plan_reports_every_layout_failure() {
    // Two sandboxes that cannot both be placed, and no room for the channels either.
    let config = Config {
        sandboxes: vec![
            Sandbox::quest("a", &[0], 100 * MIB),
            Sandbox::quest("b", &[1], 100 * MIB),
        ],
        channels: vec![partition::Channel {
            key: 5,
            size: 4 * KIB,
            kind: None,
            sandboxes: vec!["a".into(), "b".into()],
        }],
        ..Config::default()
    };
    let machine = Machine {
        cpus: 2,
        memory_bytes: 204 * MIB,
    };
    let errs = config
        .plan(&machine, &[PhysRange::new(MIB, 104 * MIB)])
        .unwrap_err();
    let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        msgs,
        [
            "no room for sandbox 'b' memory (100 MiB, 2 MiB aligned) in free physical memory",
            "no room for the shared channel area (4 KiB, 2 MiB aligned) in free physical memory",
        ]
    );
}
