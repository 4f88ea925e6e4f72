//! Every validation error, each from a small TOML snippet, with its exact message.

use partition::{Error, GIB, MIB, Machine, PhysRange, from_toml_str};

const MACHINE: Machine = Machine {
    cpus: 4,
    memory_bytes: 4 * GIB,
};

/// The messages of parsing and laying out `toml` on `machine` with `reserved` ranges (empty if
/// it is fine).
fn errors_on(toml: &str, machine: &Machine, reserved: &[PhysRange]) -> Vec<String> {
    let result = from_toml_str(toml).and_then(|c| c.plan(machine, reserved));
    match result {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    }
}

fn errors(toml: &str) -> Vec<String> {
    errors_on(toml, &MACHINE, &[])
}

/// Asserts that `toml` fails with exactly these messages.
#[track_caller]
fn expect(toml: &str, messages: &[&str]) {
    assert_eq!(errors(toml), messages, "for:\n{toml}");
}

/// Two fine sandboxes, `a` on cpu 0 and `b` on cpu 1, followed by `extra`.
fn with_ab(extra: &str) -> String {
    format!(
        "[[sandbox]]\nname = \"a\"\ncpus = [0]\nmemory = \"64 MiB\"\n\n\
         [[sandbox]]\nname = \"b\"\ncpus = [1]\nmemory = \"64 MiB\"\n\n{extra}"
    )
}

#[test]
fn a_fine_config_has_no_errors() {
    assert_eq!(errors(&with_ab("")), Vec::<String>::new());
}

// ---- memory ---------------------------------------------------------------------------------

#[test]
fn overlapping_memory() {
    expect(
        r#"
        [[sandbox]]
        name = "rt0"
        cpus = [0]
        memory = { start = 0x6000_0000, end = 0x7000_0000 }

        [[sandbox]]
        name = "linux"
        cpus = [1]
        memory = { start = "1 GiB", size = "1 GiB" }
        image = { kind = "linux", kernel = "bzImage" }
        "#,
        &[
            "sandbox 'linux' memory 0x4000_0000..0x8000_0000 overlaps sandbox 'rt0' \
           0x6000_0000..0x7000_0000",
        ],
    );
}

#[test]
fn memory_overlapping_the_monitor() {
    expect(
        r#"
        [monitor]
        memory = { start = "16 MiB", size = "16 MiB" }
        [[sandbox]]
        name = "rt0"
        cpus = [0]
        memory = { start = "30 MiB", end = "64 MiB" }
        "#,
        &[
            "sandbox 'rt0' memory 0x1e0_0000..0x400_0000 overlaps the monitor's memory \
           0x100_0000..0x200_0000",
        ],
    );
}

#[test]
fn memory_in_the_low_mib() {
    expect(
        r#"
        [[sandbox]]
        name = "rt0"
        cpus = [0]
        memory = { start = 0, end = "2 MiB" }
        "#,
        &["sandbox 'rt0' memory 0x0..0x20_0000 overlaps the low 1 MiB 0x0..0x10_0000"],
    );
}

#[test]
fn a_sandbox_bigger_than_the_machine() {
    expect(
        r#"
        [[sandbox]]
        name = "big"
        cpus = [0]
        memory = "8 GiB"
        "#,
        &["sandbox 'big' needs 8 GiB but the machine has 4 GiB"],
    );
}

#[test]
fn a_range_beyond_the_machine() {
    expect(
        r#"
        [[sandbox]]
        name = "hi"
        cpus = [0]
        memory = { start = "4032 MiB", size = "128 MiB" }
        "#,
        &[
            "sandbox 'hi' memory 0xfc00_0000..0x1_0400_0000 is beyond the machine's memory, which \
           ends at 0x1_0000_0000 (4 GiB)",
        ],
    );
}

#[test]
fn more_memory_in_total_than_the_machine() {
    expect(
        r#"
        [[sandbox]]
        name = "a"
        cpus = [0]
        memory = "2 GiB"
        [[sandbox]]
        name = "b"
        cpus = [1]
        memory = "2 GiB"
        [[sandbox]]
        name = "c"
        cpus = [2]
        memory = "2 GiB"
        "#,
        &["the sandboxes, channels and monitor need 6 GiB in total but the machine has 4 GiB"],
    );
}

#[test]
fn zero_memory() {
    expect(
        "[[sandbox]]\nname = \"rt0\"\ncpus = [0]\nmemory = 0\n",
        &["sandbox 'rt0' has zero memory"],
    );
}

#[test]
fn memory_not_a_multiple_of_2_mib() {
    expect(
        "[[sandbox]]\nname = \"rt0\"\ncpus = [0]\nmemory = \"3 MiB\"\n",
        &["sandbox 'rt0' memory size 3 MiB is not a multiple of 2 MiB"],
    );
}

#[test]
fn memory_range_not_2_mib_aligned() {
    expect(
        "[[sandbox]]\nname = \"rt0\"\ncpus = [0]\nmemory = { start = 0x30_0000, end = 0x50_0000 }\n",
        &["sandbox 'rt0' memory 0x30_0000..0x50_0000 is not 2 MiB aligned"],
    );
}

#[test]
fn empty_memory_range() {
    expect(
        "[[sandbox]]\nname = \"rt0\"\ncpus = [0]\nmemory = { start = \"1 GiB\", end = \"1 GiB\" }\n",
        &["sandbox 'rt0' memory 0x4000_0000..0x4000_0000 is empty"],
    );
}

#[test]
fn monitor_memory_zero_and_misaligned() {
    expect(
        &with_ab("[monitor]\nmemory = 0\n"),
        &["the monitor has zero memory"],
    );
    expect(
        &with_ab("[monitor]\nmemory = 5000\n"),
        &["the monitor's memory size 5000 bytes is not a multiple of 4 KiB"],
    );
}

#[test]
fn no_room_for_a_sandbox_between_reserved_ranges() {
    // 256 MiB machine, 1 MiB reserved every 64 MiB: a 100 MiB sandbox has no place.
    let machine = Machine {
        cpus: 2,
        memory_bytes: 256 * MIB,
    };
    let reserved: Vec<PhysRange> = (1..4)
        .map(|i| PhysRange::new(i * 64 * MIB, (i * 64 + 1) * MIB))
        .collect();
    let toml = "[[sandbox]]\nname = \"a\"\ncpus = [0]\nmemory = \"100 MiB\"\n";
    assert_eq!(
        errors_on(toml, &machine, &reserved),
        ["no room for sandbox 'a' memory (100 MiB, 2 MiB aligned) in free physical memory"]
    );
    // The same with room for it: placed after the last reserved range.
    let toml = "[[sandbox]]\nname = \"a\"\ncpus = [0]\nmemory = \"60 MiB\"\n";
    let plan = from_toml_str(toml)
        .unwrap()
        .plan(&machine, &reserved)
        .unwrap();
    assert_eq!(plan.sandboxes[0].ram, PhysRange::new(2 * MIB, 62 * MIB));
    let toml = "[[sandbox]]\nname = \"a\"\ncpus = [0]\nmemory = \"62 MiB\"\n\
                [[sandbox]]\nname = \"b\"\ncpus = [1]\nmemory = \"62 MiB\"\n";
    let plan = from_toml_str(toml)
        .unwrap()
        .plan(&machine, &reserved)
        .unwrap();
    assert_eq!(plan.sandboxes[0].ram, PhysRange::new(2 * MIB, 64 * MIB));
    assert_eq!(plan.sandboxes[1].ram, PhysRange::new(66 * MIB, 128 * MIB));
}

#[test]
fn an_explicit_range_over_a_reserved_one() {
    let toml = "[[sandbox]]\nname = \"a\"\ncpus = [0]\nmemory = { start = \"2 MiB\", size = \"62 MiB\" }\n";
    assert_eq!(
        errors_on(toml, &MACHINE, &[PhysRange::new(0x10_0000, 0x40_0000)]),
        ["sandbox 'a' memory 0x20_0000..0x400_0000 overlaps a reserved range 0x10_0000..0x40_0000"]
    );
}

#[test]
fn a_sandbox_too_big_for_guest_physical_space() {
    let machine = Machine {
        cpus: 1,
        memory_bytes: 128 * GIB,
    };
    let toml = "[[sandbox]]\nname = \"huge\"\ncpus = [0]\nmemory = \"70 GiB\"\n";
    assert_eq!(
        errors_on(toml, &machine, &[]),
        ["sandbox 'huge' memory 70 GiB does not fit in guest-physical space below 0x10_0000_0000"]
    );
}

// ---- CPUs -----------------------------------------------------------------------------------

#[test]
fn a_cpu_in_two_sandboxes() {
    expect(
        r#"
        [[sandbox]]
        name = "rt0"
        cpus = [0, 2]
        memory = "64 MiB"
        [[sandbox]]
        name = "rt1"
        cpus = [2, 3]
        memory = "64 MiB"
        "#,
        &["cpu 2 is assigned to both 'rt0' and 'rt1'"],
    );
}

#[test]
fn an_empty_cpu_list() {
    expect(
        "[[sandbox]]\nname = \"rt0\"\ncpus = []\nmemory = \"64 MiB\"\n",
        &["sandbox 'rt0' has no CPUs"],
    );
}

#[test]
fn a_cpu_beyond_the_machine() {
    expect(
        "[[sandbox]]\nname = \"rt0\"\ncpus = [0, 4]\nmemory = \"64 MiB\"\n",
        &["sandbox 'rt0' cpu 4 is beyond the machine, which has 4 CPUs"],
    );
}

#[test]
fn a_cpu_listed_twice() {
    expect(
        "[[sandbox]]\nname = \"rt0\"\ncpus = [1, 1]\nmemory = \"64 MiB\"\n",
        &["sandbox 'rt0' lists cpu 1 twice"],
    );
}

// ---- sandboxes ------------------------------------------------------------------------------

#[test]
fn no_sandboxes() {
    expect("", &["the configuration has no sandboxes"]);
}

#[test]
fn too_many_sandboxes() {
    let mut toml = String::new();
    for i in 0..16 {
        toml += &format!("[[sandbox]]\nname = \"s{i}\"\ncpus = [{i}]\nmemory = \"16 MiB\"\n");
    }
    let machine = Machine {
        cpus: 16,
        memory_bytes: GIB,
    };
    assert_eq!(
        errors_on(&toml, &machine, &[]),
        ["16 sandboxes, but at most 15 are supported (one SVM ASID each)"]
    );
}

#[test]
fn duplicate_sandbox_names() {
    expect(
        r#"
        [[sandbox]]
        name = "rt0"
        cpus = [0]
        memory = "64 MiB"
        [[sandbox]]
        name = "rt0"
        cpus = [1]
        memory = "64 MiB"
        "#,
        &["sandbox name 'rt0' is used twice"],
    );
}

#[test]
fn invalid_sandbox_names() {
    expect(
        "[[sandbox]]\nname = \"a b\"\ncpus = [0]\nmemory = \"64 MiB\"\n\
         [[sandbox]]\nname = \"\"\ncpus = [1]\nmemory = \"64 MiB\"\n\
         [[sandbox]]\nname = \"abcdefghijklmnopqrstuvwxyz0123456\"\ncpus = [2]\nmemory = \"64 MiB\"\n",
        &[
            "sandbox #0 name 'a b' is invalid: use 1 to 31 letters, digits, '-' and '_'",
            "sandbox #1 name '' is invalid: use 1 to 31 letters, digits, '-' and '_'",
            "sandbox #2 name 'abcdefghijklmnopqrstuvwxyz0123456' is invalid: use 1 to 31 letters, \
             digits, '-' and '_'",
        ],
    );
}

#[test]
fn linux_image_strings() {
    let long = "x".repeat(2048);
    expect(
        &format!(
            "[[sandbox]]\nname = \"linux\"\ncpus = [0]\nmemory = \"256 MiB\"\n\
             image = {{ kind = \"linux\", kernel = \"\", initrd = \"\", cmdline = \"{long}\" }}\n"
        ),
        &[
            "sandbox 'linux' kernel command line is 2048 bytes long (at most 2047)",
            "sandbox 'linux' has an empty kernel path",
            "sandbox 'linux' has an empty initrd path",
        ],
    );
}

#[test]
fn a_multi_core_linux_sandbox_is_fine() {
    expect(
        "[[sandbox]]\nname = \"linux\"\ncpus = [0, 1]\nmemory = \"256 MiB\"\n\
         image = { kind = \"linux\", kernel = \"debian\" }\n",
        &[],
    );
}

// ---- devices --------------------------------------------------------------------------------

#[test]
fn a_console_used_twice() {
    expect(
        r#"
        [[sandbox]]
        name = "rt0"
        cpus = [0]
        memory = "64 MiB"
        console = "COM1"
        [[sandbox]]
        name = "rt1"
        cpus = [1]
        memory = "64 MiB"
        console = "com1"
        "#,
        &["console COM1 is used by both 'rt0' and 'rt1'"],
    );
}

#[test]
fn an_io_port_given_to_two_sandboxes() {
    expect(
        r#"
        [[sandbox]]
        name = "rt0"
        cpus = [0]
        memory = "64 MiB"
        io_ports = ["0x3f8"]
        [[sandbox]]
        name = "linux"
        cpus = [1]
        memory = "64 MiB"
        io_ports = [0x3f8, "0x60-0x64"]
        "#,
        &["I/O port 0x3f8 given to both 'rt0' and 'linux'"],
    );
}

#[test]
fn io_ports_overlapping_another_sandboxs_console() {
    expect(
        r#"
        [[sandbox]]
        name = "rt0"
        cpus = [0]
        memory = "64 MiB"
        console = "COM1"
        [[sandbox]]
        name = "linux"
        cpus = [1]
        memory = "64 MiB"
        io_ports = ["0x3f0-0x3fa"]
        "#,
        &["I/O ports 0x3f8-0x3fa given to both 'rt0' (console COM1) and 'linux'"],
    );
}

#[test]
fn io_ports_given_twice_to_one_sandbox() {
    expect(
        &with_ab(
            "[[sandbox]]\nname = \"c\"\ncpus = [2]\nmemory = \"64 MiB\"\nconsole = \"COM2\"\nio_ports = [\"0x2f8-0x2ff\", \"0x80-0x8f\", \"0x8f\"]\n",
        ),
        &[
            "I/O ports 0x2f8-0x2ff given twice to 'c' (console COM2 already has them)",
            "I/O port 0x8f given twice to 'c'",
        ],
    );
}

#[test]
fn a_pci_device_given_twice() {
    expect(
        "[[sandbox]]\nname = \"rt0\"\ncpus = [0]\nmemory = \"64 MiB\"\npci = [\"00:1f.0\", \"00:1f.0\"]\n",
        &["PCI device 00:1f.0 given twice to 'rt0'"],
    );
    expect(
        &with_ab(
            "[[sandbox]]\nname = \"c\"\ncpus = [2]\nmemory = \"64 MiB\"\npci = [\"0000:00:1f.0\"]\n\
                  [[sandbox]]\nname = \"d\"\ncpus = [3]\nmemory = \"64 MiB\"\npci = [\"00:1f.0\"]\n",
        ),
        &["PCI device 00:1f.0 given twice: to 'c' and 'd'"],
    );
}

// ---- channels -------------------------------------------------------------------------------

#[test]
fn a_channel_naming_an_unknown_sandbox() {
    expect(
        &with_ab("[[channel]]\nkey = 153\nsize = 4096\nsandboxes = [\"a\", \"foo\"]\n"),
        &["channel 153 names unknown sandbox 'foo'"],
    );
}

#[test]
fn duplicate_channel_keys() {
    expect(
        &with_ab(
            "[[channel]]\nkey = 153\nsize = 4096\nsandboxes = [\"a\", \"b\"]\n\
             [[channel]]\nkey = 153\nsize = 4096\nsandboxes = [\"a\", \"b\"]\n",
        ),
        &["channel key 153 is used twice"],
    );
}

#[test]
fn channel_size_zero_or_not_page_multiple() {
    expect(
        &with_ab(
            "[[channel]]\nkey = 1\nsize = 0\nsandboxes = [\"a\", \"b\"]\n\
             [[channel]]\nkey = 2\nsize = 6000\nsandboxes = [\"a\", \"b\"]\n",
        ),
        &[
            "channel 1 has size zero",
            "channel 2 size 6000 bytes is not a multiple of 4 KiB",
        ],
    );
}

#[test]
fn a_channel_naming_a_sandbox_twice_or_only_one() {
    expect(
        &with_ab("[[channel]]\nkey = 7\nsize = 4096\nsandboxes = [\"a\", \"a\"]\n"),
        &[
            "channel 7 names sandbox 'a' twice",
            "channel 7 names 1 sandbox; a channel joins at least two",
        ],
    );
    expect(
        &with_ab("[[channel]]\nkey = 8\nsize = 4096\nsandboxes = []\n"),
        &["channel 8 names 0 sandboxes; a channel joins at least two"],
    );
}

#[test]
fn too_many_channels() {
    let mut extra = String::new();
    for key in 0..257 {
        extra += &format!("[[channel]]\nkey = {key}\nsize = 4096\nsandboxes = [\"a\", \"b\"]\n");
    }
    expect(&with_ab(&extra), &["too many channels: 257 (at most 256)"]);
}

// ---- all errors, in order --------------------------------------------------------------------

#[test]
fn all_errors_are_reported_in_a_fixed_order() {
    let toml = r#"
        [[sandbox]]
        name = "rt0"
        cpus = [0, 9]
        memory = { start = "1 GiB", size = "512 MiB" }
        console = "COM1"
        pci = ["00:03.0"]

        [[sandbox]]
        name = "rt1"
        cpus = [0]
        memory = { start = "1280 MiB", size = "512 MiB" }
        console = "COM1"
        pci = ["00:03.0"]

        [[sandbox]]
        name = "big"
        cpus = []
        memory = "8 GiB"

        [[channel]]
        key = 153
        size = 100
        sandboxes = ["rt0", "nope"]
    "#;
    let expected = [
        "sandbox 'rt0' cpu 9 is beyond the machine, which has 4 CPUs",
        "sandbox 'big' has no CPUs",
        "cpu 0 is assigned to both 'rt0' and 'rt1'",
        "console COM1 is used by both 'rt0' and 'rt1'",
        "PCI device 00:03.0 given twice: to 'rt0' and 'rt1'",
        "sandbox 'big' needs 8 GiB but the machine has 4 GiB",
        "sandbox 'rt1' memory 0x5000_0000..0x7000_0000 overlaps sandbox 'rt0' \
         0x4000_0000..0x6000_0000",
        "channel 153 size 100 bytes is not a multiple of 4 KiB",
        "channel 153 names unknown sandbox 'nope'",
    ];
    assert_eq!(errors(toml), expected);
    // Deterministic: the same again.
    assert_eq!(errors(toml), expected);
}

// ---- TOML-level errors: one error with line and column ----------------------------------------

/// The single TOML error for `toml`, as (line, column, message).
fn toml_error(toml: &str) -> (usize, usize, String) {
    match from_toml_str(toml) {
        Ok(c) => panic!("parsed: {c:?}"),
        Err(errs) => {
            assert_eq!(errs.len(), 1, "{errs:?}");
            match &errs[0] {
                Error::Toml {
                    line,
                    column,
                    message,
                } => (*line, *column, message.clone()),
                e => panic!("not a TOML error: {e}"),
            }
        }
    }
}

#[test]
fn syntax_errors_have_line_and_column() {
    let (line, column, message) = toml_error("[[sandbox]]\nname = \"rt0\ncpus = [0]\n");
    assert_eq!((line, column), (2, 12), "{message}");
    let e = &from_toml_str("[[sandbox]]\nname = \"rt0\ncpus = [0]\n").unwrap_err()[0];
    assert!(e.to_string().starts_with("line 2, column 12: "), "{e}");
}

#[test]
fn unknown_fields_are_named() {
    let (line, column, message) =
        toml_error("[[sandbox]]\nname = \"rt0\"\ncpu = [0]\nmemory = \"64 MiB\"\n");
    assert_eq!((line, column), (3, 1));
    assert!(
        message.starts_with("unknown field `cpu`, expected one of `name`, `cpus`"),
        "{message}"
    );

    let (line, _, message) = toml_error("[sandboxes]\nx = 1\n");
    assert_eq!(line, 1);
    assert!(
        message.starts_with("unknown field `sandboxes`"),
        "{message}"
    );

    let (line, _, message) =
        toml_error("[[channel]]\nkey = 1\nsize = 4096\nsandboxes = []\nflavour = \"sync\"\n");
    assert_eq!(line, 5);
    assert!(message.starts_with("unknown field `flavour`"), "{message}");

    let (line, _, message) = toml_error(
        "[[sandbox]]\nname = \"l\"\ncpus = [0]\nmemory = \"64 MiB\"\n\
         image = { kind = \"linux\", kernel = \"k\", append = \"x\" }\n",
    );
    assert_eq!(line, 5);
    assert!(message.starts_with("unknown field `append`"), "{message}");
}

#[test]
fn missing_fields_are_named() {
    let (line, _, message) = toml_error("[[sandbox]]\nname = \"rt0\"\nmemory = \"64 MiB\"\n");
    assert_eq!(line, 1);
    assert_eq!(message, "missing field `cpus`");
}

#[test]
fn bad_values_point_at_the_value() {
    let sb = |field: &str| format!("[[sandbox]]\nname = \"rt0\"\ncpus = [0]\n{field}\n");
    let cases: &[(&str, usize, &str)] = &[
        (
            "memory = \"512 MB\"",
            10,
            "size '512 MB': write MiB (sizes are binary; MB is ambiguous)",
        ),
        (
            "memory = \"12 parsecs\"",
            10,
            "size '12 parsecs' has unknown unit 'parsecs' (use KiB, MiB, GiB or TiB)",
        ),
        ("memory = -5", 10, "-5 is negative"),
        (
            "memory = { start = 0 }",
            10,
            "a memory range needs `start` and exactly one of `end` and `size`",
        ),
        (
            "memory = \"64 MiB\"\nconsole = \"COM5\"",
            11,
            "unknown console 'COM5' (use \"COM1\", \"COM2\", \"COM3\", \"COM4\" or \"none\")",
        ),
        (
            "memory = \"64 MiB\"\npci = [\"00:20.0\"]",
            8,
            "'00:20.0' is not a PCI address: use \"bus:device.function\" in hex, e.g. \"00:1f.2\" \
             (device 00..1f, function 0..7)",
        ),
        (
            "memory = \"64 MiB\"\nio_ports = [0x10000]",
            13,
            "I/O port 65536 is not in 0..=0xffff",
        ),
        (
            "memory = \"64 MiB\"\nio_ports = [\"0x3ff-0x3f8\"]",
            13,
            "I/O port range '0x3ff-0x3f8' is empty (first > last)",
        ),
        (
            "memory = \"64 MiB\"\nimage = \"windows\"",
            9,
            "unknown image 'windows' (use \"quest\" or \"linux\")",
        ),
        (
            "memory = \"64 MiB\"\nimage = { kind = \"linux\" }",
            9,
            "missing field `kernel`",
        ),
        (
            "memory = \"64 MiB\"\nimage = { kind = \"quest\", kernel = \"k\" }",
            9,
            "a quest image takes no `kernel` (the Quest kernel is built by xtask)",
        ),
    ];
    for (field, column, expected) in cases {
        let toml = sb(field);
        let (line, col, message) = toml_error(&toml);
        assert_eq!(message, *expected, "for {field}");
        assert_eq!(
            (line, col),
            (field.lines().count() + 3, *column),
            "for {field}: {message}"
        );
    }

    let (line, column, message) =
        toml_error("[[channel]]\nkey = 1\nsize = 4096\nkind = \"fifo\"\nsandboxes = []\n");
    assert_eq!((line, column), (4, 8));
    assert_eq!(
        message,
        "unknown channel kind 'fifo' (use \"async\" for four-slot or \"sync\" for FIFO)"
    );

    let (line, _, message) = toml_error("[[channel]]\nkey = -1\nsize = 4096\nsandboxes = []\n");
    assert_eq!(line, 2);
    assert!(message.contains("-1"), "{message}");
}

// ---- errors only a programmatic configuration can make (TOML parsing refuses these values) ----

#[test]
fn values_the_toml_front_end_refuses_are_still_validated() {
    use partition::{Config, Console, PciAddr, PortRange, Sandbox};
    let config = Config {
        sandboxes: vec![Sandbox {
            console: Console::Com(5),
            io_ports: vec![PortRange {
                first: 0x400,
                last: 0x3f8,
            }],
            pci: vec![
                PciAddr {
                    bus: 0,
                    dev: 0x20,
                    func: 0,
                },
                PciAddr {
                    bus: 0,
                    dev: 0,
                    func: 8,
                },
            ],
            ..Sandbox::quest("x", &[0], 64 * MIB)
        }],
        ..Config::default()
    };
    let msgs: Vec<String> = config
        .validate(&MACHINE)
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        msgs,
        [
            "sandbox 'x' console COM5 does not exist (use COM1..COM4 or none)",
            "sandbox 'x' I/O port range 0x400-0x3f8 is empty (first > last)",
            "sandbox 'x' PCI device 00:20.0 is invalid (device 0..=1f, function 0..=7)",
            "sandbox 'x' PCI device 00:00.8 is invalid (device 0..=1f, function 0..=7)",
        ]
    );
}
