//! Property tests: blob round trips, decoding arbitrary bytes, and the invariants of every plan
//! that layout produces.

use std::collections::{BTreeMap, BTreeSet};

use partition::{
    CHANNEL_ALIGN, Channel, ChannelKind, ChannelMap, Config, Console, Error, GUEST_PCI_HOLE, Image,
    KIB, LOW_MEMORY_END, MIB, Machine, Memory, PciAddr, PhysRange, Plan, PlannedChannel,
    PlannedSandbox, PortRange, SANDBOX_ALIGN, Sandbox, crc32, from_toml_str,
};
use proptest::prelude::*;

// ---- strategies -------------------------------------------------------------------------------

fn arb_range() -> impl Strategy<Value = PhysRange> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| PhysRange::new(a, b)),
        (0u64..1 << 20, 0u64..1 << 20).prop_map(|(a, l)| PhysRange::new(a << 12, (a + l) << 12)),
    ]
}

fn arb_console() -> impl Strategy<Value = Console> {
    prop_oneof![Just(Console::None), (1u8..).prop_map(Console::Com)]
}

fn arb_image() -> impl Strategy<Value = Image> {
    prop_oneof![
        Just(Image::Quest),
        (".{0,12}", proptest::option::of(".{0,12}"), ".{0,40}").prop_map(
            |(kernel, initrd, cmdline)| Image::Linux {
                kernel,
                initrd,
                cmdline
            }
        ),
    ]
}

fn arb_kind() -> impl Strategy<Value = Option<ChannelKind>> {
    prop_oneof![
        Just(None),
        Just(Some(ChannelKind::Async)),
        Just(Some(ChannelKind::Sync))
    ]
}

/// Any plan the format can carry (valid or not).
fn arb_plan() -> impl Strategy<Value = Plan> {
    let sandbox = (
        any::<u8>(),
        ".{0,20}",
        prop::collection::vec(any::<u32>(), 0..5),
        arb_range(),
        arb_image(),
        arb_console(),
        prop::collection::vec((any::<u16>(), any::<u16>()), 0..4),
        prop::collection::vec(any::<(u8, u8, u8)>(), 0..4),
    )
        .prop_map(
            |(id, name, cpus, ram, image, console, ports, pci)| PlannedSandbox {
                id,
                name,
                cpus,
                ram,
                image,
                console,
                io_ports: ports
                    .into_iter()
                    .map(|(first, last)| PortRange { first, last })
                    .collect(),
                pci: pci
                    .into_iter()
                    .map(|(bus, dev, func)| PciAddr { bus, dev, func })
                    .collect(),
            },
        );
    let channel = (
        any::<u32>(),
        arb_kind(),
        arb_range(),
        prop::collection::vec((any::<u8>(), any::<u64>()), 0..5),
    )
        .prop_map(|(key, kind, phys, maps)| PlannedChannel {
            key,
            kind,
            phys,
            maps: maps
                .into_iter()
                .map(|(sandbox, guest)| ChannelMap { sandbox, guest })
                .collect(),
        });
    (
        proptest::option::of(arb_range()),
        prop::collection::vec(sandbox, 0..6),
        prop::collection::vec(channel, 0..6),
    )
        .prop_map(|(monitor, sandboxes, channels)| Plan {
            monitor,
            sandboxes,
            channels,
        })
}

/// A machine, a configuration meant to be mostly valid (unique names, disjoint CPUs, consoles,
/// ports and PCI functions, channels naming existing sandboxes) with occasional mistakes, and
/// reserved ranges.
fn arb_setup(mistakes: bool) -> impl Strategy<Value = (Config, Machine, Vec<PhysRange>)> {
    let sandbox = (
        0u32..3, // cpu count
        prop_oneof![
            8 => (1u64..=48).prop_map(|k| Memory::Size(k * SANDBOX_ALIGN)),
            1 => (1u64..=200, 1u64..=24).prop_map(|(s, l)| Memory::Range(PhysRange::new(s * SANDBOX_ALIGN, (s + l) * SANDBOX_ALIGN))),
            1 => (0u64..=100 * MIB).prop_map(Memory::Size),
        ],
        prop_oneof![3 => Just(None), 1 => (0u8..=5).prop_map(Some)],
        0u16..3,       // port ranges
        any::<bool>(), // a PCI function
        prop_oneof![
            Just(Image::Quest),
            (
                "[a-zA-Z0-9/._-]{1,12}",
                proptest::option::of("[a-z.]{1,8}"),
                ".{0,40}"
            )
                .prop_map(|(kernel, initrd, cmdline)| Image::Linux {
                    kernel,
                    initrd,
                    cmdline
                }),
        ],
    );
    let channel = (
        0u32..6,
        prop_oneof![8 => (1u64..=4).prop_map(|k| k * CHANNEL_ALIGN), 1 => 0u64..20_000],
        arb_kind(),
        prop::collection::vec(0usize..7, 0..4),
    );
    (
        1u32..=8,
        prop_oneof![
            (128u64..=512).prop_map(|m| m * MIB),
            (128u64..=4096).prop_map(|m| m * MIB)
        ],
        prop::collection::vec(sandbox, 1..=5),
        prop::collection::vec(channel, 0..4),
        prop::collection::vec((0u64..1024, 1u64..=256), 0..4),
        proptest::option::of(prop_oneof![
            (1u64..=16).prop_map(|k| Memory::Size(k * MIB)),
            (2u64..=8).prop_map(|k| Memory::Range(PhysRange::new(k * MIB, (k + 1) * MIB))),
        ]),
        any::<u64>(), // seed for mistakes
    )
        .prop_map(move |(cpus, memory, sbs, chs, res, monitor_memory, seed)| {
            let machine = Machine {
                cpus,
                memory_bytes: memory,
            };
            let oops = |n: u64| mistakes && (seed >> (n % 60)) & 7 == 0;
            let mut next_cpu = 0;
            let mut com_used = BTreeSet::new();
            let sandboxes: Vec<Sandbox> = sbs
                .into_iter()
                .enumerate()
                .map(|(i, (ncpu, memory, com, nports, has_pci, image))| {
                    // Linux sandboxes have one CPU (more is not supported yet).
                    let ncpu = if matches!(image, Image::Linux { .. }) { 1 } else { ncpu };
                    let cpus: Vec<u32> = (0..ncpu.max(1)).map(|k| next_cpu + k).collect();
                    next_cpu += if oops(i as u64) { 0 } else { ncpu.max(1) };
                    let console = match com {
                        Some(n) if mistakes || ((1..=4).contains(&n) && com_used.insert(n)) => {
                            Console::Com(n)
                        }
                        _ => Console::None,
                    };
                    let base = 0x1000 + 0x100 * i as u16;
                    Sandbox {
                        name: if oops(i as u64 + 10) {
                            "s0".into()
                        } else {
                            format!("s{i}")
                        },
                        cpus,
                        memory,
                        image,
                        console,
                        io_ports: (0..nports)
                            .map(|k| PortRange {
                                first: base + 16 * k,
                                last: base + 16 * k + 7,
                            })
                            .collect(),
                        pci: if has_pci {
                            vec![PciAddr {
                                bus: 0,
                                dev: i as u8 + 2,
                                func: 0,
                            }]
                        } else {
                            vec![]
                        },
                    }
                })
                .collect();
            let n = sandboxes.len();
            let mut keys = BTreeSet::new();
            let channels = chs
                .into_iter()
                .filter_map(|(key, size, kind, picks)| {
                    if !keys.insert(key) && !mistakes {
                        return None;
                    }
                    let mut names: Vec<String> = Vec::new();
                    for p in picks {
                        let name = if p < n {
                            format!("s{p}")
                        } else if mistakes {
                            "ghost".into()
                        } else {
                            continue;
                        };
                        if mistakes || !names.contains(&name) {
                            names.push(name);
                        }
                    }
                    if !mistakes {
                        for extra in ["s0".to_string(), format!("s{}", n - 1)] {
                            if names.len() < 2 && !names.contains(&extra) {
                                names.push(extra);
                            }
                        }
                        if names.len() < 2 {
                            return None;
                        }
                    }
                    let size = if mistakes {
                        size
                    } else {
                        size.div_ceil(CHANNEL_ALIGN).max(1) * CHANNEL_ALIGN
                    };
                    Some(Channel {
                        key,
                        size,
                        kind,
                        sandboxes: names,
                    })
                })
                .collect();
            let machine = if mistakes {
                machine
            } else {
                Machine {
                    cpus: machine.cpus.max(next_cpu),
                    ..machine
                }
            };
            let reserved = res
                .into_iter()
                .map(|(start, len)| PhysRange::new(start * MIB, (start + len) * MIB))
                .collect();
            (
                Config {
                    machine: None,
                    monitor_memory,
                    sandboxes,
                    channels,
                },
                machine,
                reserved,
            )
        })
}

// ---- the invariants of a plan, checked independently of Plan::validate -------------------------

fn check_invariants(
    config: &Config,
    machine: &Machine,
    reserved: &[PhysRange],
    plan: &Plan,
) -> Result<(), TestCaseError> {
    // Physical regions: inside the machine above the low MiB, and pairwise disjoint (reserved
    // ranges only need to be disjoint from the others).
    let mut owned: Vec<(String, PhysRange)> = Vec::new();
    if let Some(m) = plan.monitor {
        owned.push(("monitor".into(), m));
    }
    for s in &plan.sandboxes {
        owned.push((format!("sandbox {}", s.name), s.ram));
    }
    for c in &plan.channels {
        owned.push((format!("channel {}", c.key), c.phys));
    }
    for (what, r) in &owned {
        prop_assert!(!r.is_empty(), "{what} is empty");
        prop_assert!(
            r.start >= LOW_MEMORY_END && r.end <= machine.memory_bytes,
            "{what} {r} outside"
        );
        for res in reserved {
            prop_assert!(!r.overlaps(res), "{what} {r} overlaps reserved {res}");
        }
    }
    let mut sorted: Vec<&(String, PhysRange)> = owned.iter().collect();
    sorted.sort_by_key(|(_, r)| r.start);
    for w in sorted.windows(2) {
        prop_assert!(
            w[0].1.end <= w[1].1.start,
            "{} {} overlaps {} {}",
            w[0].0,
            w[0].1,
            w[1].0,
            w[1].1
        );
    }

    // Sandboxes: as configured, ids in order, RAM 2 MiB aligned and of the asked size.
    prop_assert_eq!(plan.sandboxes.len(), config.sandboxes.len());
    let mut cpu_owner = BTreeMap::new();
    for (i, (p, c)) in plan.sandboxes.iter().zip(&config.sandboxes).enumerate() {
        prop_assert_eq!(usize::from(p.id), i);
        prop_assert_eq!(&p.name, &c.name);
        prop_assert_eq!(&p.cpus, &c.cpus);
        prop_assert!(p.ram.is_aligned(SANDBOX_ALIGN));
        match &c.memory {
            Memory::Size(n) => prop_assert_eq!(p.ram.len(), *n),
            Memory::Range(r) => prop_assert_eq!(p.ram, *r),
        }
        for &cpu in &p.cpus {
            prop_assert!(cpu < machine.cpus);
            prop_assert!(
                cpu_owner.insert(cpu, i).is_none(),
                "cpu {cpu} in two sandboxes"
            );
        }
    }

    // Channels: exactly the named sandboxes, 4 KiB aligned, of the asked size; guest windows
    // clear of guest RAM, the PCI hole and each other.
    prop_assert_eq!(plan.channels.len(), config.channels.len());
    let mut windows: BTreeMap<u8, Vec<PhysRange>> = BTreeMap::new();
    for (p, c) in plan.channels.iter().zip(&config.channels) {
        prop_assert_eq!(p.key, c.key);
        prop_assert_eq!(p.phys.len(), c.size);
        prop_assert!(p.phys.is_aligned(CHANNEL_ALIGN));
        let mapped: Vec<&str> = p
            .maps
            .iter()
            .map(|m| plan.sandboxes[usize::from(m.sandbox)].name.as_str())
            .collect();
        let named: Vec<&str> = c.sandboxes.iter().map(String::as_str).collect();
        prop_assert_eq!(mapped, named);
        for m in &p.maps {
            prop_assert!(m.guest.is_multiple_of(CHANNEL_ALIGN));
            let w = PhysRange::new(m.guest, m.guest + c.size);
            prop_assert!(!w.overlaps(&GUEST_PCI_HOLE));
            for g in plan.sandboxes[usize::from(m.sandbox)].guest_ram() {
                prop_assert!(!w.overlaps(&PhysRange::new(g.guest, g.guest + g.len)));
            }
            let ws = windows.entry(m.sandbox).or_default();
            prop_assert!(ws.iter().all(|o| !o.overlaps(&w)));
            ws.push(w);
        }
    }

    prop_assert_eq!(plan.validate_with_reserved(machine, reserved), Ok(()));
    prop_assert_eq!(&Plan::decode(&plan.encode()).unwrap(), plan);
    Ok(())
}

fn is_layout_error(e: &Error) -> bool {
    matches!(
        e,
        Error::NoRoom { .. }
            | Error::Overlap {
                b: partition::Owner::Reserved,
                ..
            }
    )
}

fn reseal(b: &mut [u8]) {
    if b.len() >= 16 {
        let len = b.len() as u32;
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..16].fill(0);
        let crc = crc32(b);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
    }
}

const ANY_MACHINE: Machine = Machine {
    cpus: 8,
    memory_bytes: 8 << 30,
};

// ---- properties -------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn any_plan_round_trips_through_the_blob(plan in arb_plan()) {
        // Validation of any plan (what a decoded blob may hold) never panics either.
        let _ = plan.validate_with_reserved(&ANY_MACHINE, &[PhysRange::new(0, u64::MAX)]);
        let blob = plan.encode();
        prop_assert_eq!(Plan::decode(&blob), Ok(plan));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let r = Plan::decode(&bytes);
        prop_assert!(r.is_err() || bytes.starts_with(b"QVPB"));
    }

    #[test]
    fn random_bodies_behind_a_good_header_never_panic(body in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut b = b"QVPB\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
        b.extend(body);
        reseal(&mut b);
        if let Ok(plan) = Plan::decode(&b) {
            let _ = plan.validate(&ANY_MACHINE);
            prop_assert_eq!(Plan::decode(&plan.encode()), Ok(plan));
        }
    }

    #[test]
    fn mutated_blobs_never_panic(
        (config, machine, reserved) in arb_setup(false),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        seal in any::<bool>(),
    ) {
        let plan = config.plan(&machine, &reserved).unwrap_or_default();
        let good = plan.encode();
        let mut b = good.clone();
        for (at, v) in edits {
            let i = at.index(b.len());
            b[i] = v;
        }
        if let Some(c) = cut {
            b.truncate(c.index(b.len() + 1));
        }
        if seal {
            reseal(&mut b);
        }
        if let Ok(p) = Plan::decode(&b) {
            let _ = p.validate_with_reserved(&machine, &reserved);
        }
        // Without resealing, any change to the bytes is an error.
        if !seal && b != good {
            prop_assert!(Plan::decode(&b).is_err());
        }
    }

    #[test]
    fn plans_of_mostly_valid_configs_keep_the_invariants((config, machine, reserved) in arb_setup(false)) {
        match config.plan(&machine, &reserved) {
            Ok(plan) => check_invariants(&config, &machine, &reserved, &plan)?,
            Err(errs) => {
                // Everything but explicit ranges and sizes is valid by construction; what is
                // left are memory problems.
                for e in &errs {
                    prop_assert!(
                        is_layout_error(e) || matches!(e, Error::Overlap { .. } | Error::TotalTooBig { .. }
                            | Error::BeyondMachine { .. } | Error::TooBig { .. } | Error::SizeMisaligned { .. }
                            | Error::ZeroSize { .. } | Error::CpuBeyondMachine { .. }),
                        "{e}"
                    );
                }
            }
        }
    }

    #[test]
    fn any_config_validates_deterministically_and_plans_keep_the_invariants(
        (config, machine, reserved) in arb_setup(true)
    ) {
        let first = config.validate(&machine);
        prop_assert_eq!(&first, &config.validate(&machine));
        for e in first.as_ref().err().into_iter().flatten() {
            prop_assert!(!e.to_string().is_empty());
        }
        match config.plan(&machine, &reserved) {
            Ok(plan) => {
                prop_assert!(first.is_ok());
                check_invariants(&config, &machine, &reserved, &plan)?;
                // A valid configuration survives TOML.
                prop_assert_eq!(from_toml_str(&config.to_toml()), Ok(config.clone()));
            }
            Err(errs) => {
                prop_assert!(!errs.is_empty());
                if first.is_ok() {
                    prop_assert!(errs.iter().all(is_layout_error), "{errs:?}");
                } else {
                    prop_assert_eq!(Err(errs), first);
                }
            }
        }
    }
}

#[test]
fn the_mostly_valid_generator_mostly_plans() {
    // Guard against a vacuous property: most generated setups must lay out.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = arb_setup(false);
    let ok = (0..200)
        .filter(|_| {
            let (c, m, r) = strategy.new_tree(&mut runner).unwrap().current();
            c.plan(&m, &r).is_ok()
        })
        .count();
    assert!(ok >= 80, "only {ok} of 200 planned");
}

#[test]
fn channel_sizes_at_kib_granularity_are_placed_back_to_back() {
    let config = Config {
        sandboxes: vec![
            Sandbox::quest("a", &[0], 2 * MIB),
            Sandbox::quest("b", &[1], 2 * MIB),
        ],
        channels: (0..3)
            .map(|k| Channel {
                key: k,
                size: 4 * KIB * u64::from(k + 1),
                kind: None,
                sandboxes: vec!["a".into(), "b".into()],
            })
            .collect(),
        ..Config::default()
    };
    let plan = config
        .plan(
            &Machine {
                cpus: 2,
                memory_bytes: 64 * MIB,
            },
            &[],
        )
        .unwrap();
    let phys: Vec<PhysRange> = plan.channels.iter().map(|c| c.phys).collect();
    assert_eq!(phys[0].end, phys[1].start);
    assert_eq!(phys[1].end, phys[2].start);
}
