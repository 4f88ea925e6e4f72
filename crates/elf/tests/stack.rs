//! The initial process stack, parsed back.

mod common;

use common::{StackView, aux};
use elf::{
    ARG_MAX, AT_BASE, AT_ENTRY, AT_EXECFN, AT_NULL, AT_PAGESZ, AT_PHDR, AT_PLATFORM, AT_RANDOM,
    AT_UID, AuxvParams, Error, LoadOptions, MAX_AUXV, StackParams, build_initial_stack, load_plan,
    standard_auxv,
};

const TOP: u64 = 0x7fff_ffff_f000;

#[test]
fn layout_round_trips() {
    let argv: &[&[u8]] = &[b"/bin/hello", b"-v", b""];
    let envp: &[&[u8]] = &[b"HOME=/", b"TERM=vt100"];
    let plan = load_plan(common::STATIC, &LoadOptions::default()).unwrap();
    let auxv = standard_auxv(
        &plan,
        &AuxvParams {
            uid: 1000,
            ..AuxvParams::default()
        },
    );
    let random: [u8; 16] = core::array::from_fn(|i| i as u8 * 3 + 1);
    let (bytes, rsp) = build_initial_stack(TOP, argv, envp, &auxv, random, b"x86_64").unwrap();

    assert_eq!(rsp % 16, 0, "ABI: rsp 16-byte aligned at entry");
    assert_eq!(rsp + bytes.len() as u64, TOP);
    assert!(bytes.len() < 4096);
    let view = StackView { bytes: &bytes, rsp };
    let s = view.parse();
    assert_eq!(s.argc, 3);
    assert_eq!(s.argv, argv);
    assert_eq!(s.envp, envp);
    // Every caller entry survives in order, then the builder's own.
    assert_eq!(&s.auxv[..auxv.len()], &auxv[..]);
    assert_eq!(aux(&s.auxv, AT_UID), Some(1000));
    assert_eq!(aux(&s.auxv, AT_PAGESZ), Some(4096));
    assert_eq!(aux(&s.auxv, AT_PHDR), Some(0x40_0040));
    assert_eq!(aux(&s.auxv, AT_ENTRY), Some(plan.entry));
    assert_eq!(aux(&s.auxv, AT_BASE), Some(0));
    let r = aux(&s.auxv, AT_RANDOM).unwrap();
    assert_eq!(view.slice(r, 16), random);
    assert_eq!(view.cstr(aux(&s.auxv, AT_PLATFORM).unwrap()), b"x86_64");
    assert_eq!(view.cstr(aux(&s.auxv, AT_EXECFN).unwrap()), b"/bin/hello");
    // The data above the vectors; the last 8 bytes are the zero end marker.
    assert!(s.vectors_end <= r);
    assert_eq!(view.word(TOP - 8), 0);
    // Strings are ascending and contiguous: argv then envp.
    let ptrs: Vec<u64> = (1..=3).map(|i| view.word(rsp + 8 * i)).collect();
    assert_eq!(ptrs[1], ptrs[0] + 11);
    assert_eq!(ptrs[2], ptrs[1] + 3);
}

#[test]
fn empty_argv_and_envp() {
    let (bytes, rsp) = build_initial_stack(TOP, &[], &[], &[], [0; 16], b"").unwrap();
    assert_eq!(rsp % 16, 0);
    let s = StackView { bytes: &bytes, rsp }.parse();
    assert_eq!((s.argc, s.argv.len(), s.envp.len()), (0, 0, 0));
    // Only AT_RANDOM: no platform, no execfn without argv[0].
    assert_eq!(s.auxv.len(), 1);
    assert_eq!(s.auxv[0].0, AT_RANDOM);
}

#[test]
fn unaligned_stack_top_and_explicit_execfn() {
    for top in [TOP - 1, TOP - 7, TOP - 8, TOP - 9, TOP - 15] {
        let p = StackParams {
            argv: &[b"a"],
            envp: &[],
            auxv: &[],
            random: [9; 16],
            platform: b"x86_64",
            execfn: Some(b"/boot/a"),
        };
        let (bytes, rsp) = p.build(top).unwrap();
        assert_eq!(rsp % 16, 0);
        assert_eq!(rsp + bytes.len() as u64, top);
        let view = StackView { bytes: &bytes, rsp };
        let s = view.parse();
        assert_eq!(view.cstr(aux(&s.auxv, AT_EXECFN).unwrap()), b"/boot/a");
    }
}

#[test]
fn builder_owned_aux_keys_are_replaced() {
    let auxv = [
        (AT_RANDOM, 1),
        (AT_PLATFORM, 2),
        (AT_EXECFN, 3),
        (AT_NULL, 0),
        (AT_UID, 5),
    ];
    let (bytes, rsp) = build_initial_stack(TOP, &[b"x"], &[], &auxv, [1; 16], b"p").unwrap();
    let view = StackView { bytes: &bytes, rsp };
    let s = view.parse();
    // AT_NULL in the input did not cut the vector short; AT_UID survived.
    assert_eq!(aux(&s.auxv, AT_UID), Some(5));
    for key in [AT_RANDOM, AT_PLATFORM, AT_EXECFN] {
        assert_eq!(s.auxv.iter().filter(|(k, _)| *k == key).count(), 1);
        let v = aux(&s.auxv, key).unwrap();
        assert!(v >= rsp && v < TOP, "{key} points into the stack");
    }
}

#[test]
fn limits_are_errors_not_panics() {
    let big = vec![b'a'; ARG_MAX];
    assert!(matches!(
        build_initial_stack(TOP, &[&big], &[], &[], [0; 16], b""),
        Err(Error::ArgumentsTooLarge { .. })
    ));
    let half = vec![b'a'; ARG_MAX / 2];
    let e = build_initial_stack(TOP, &[&half], &[&half], &[], [0; 16], b"").unwrap_err();
    assert!(matches!(e, Error::ArgumentsTooLarge { .. }));
    assert_eq!(e.errno(), 7, "E2BIG");
    let many: Vec<&[u8]> = vec![b""; ARG_MAX / 8];
    assert!(build_initial_stack(TOP, &many, &[], &[], [0; 16], b"").is_err());
    // Just under the limit works (in envp: argv[0] would also be copied for AT_EXECFN).
    let fits = vec![b'a'; ARG_MAX - 64];
    let (bytes, rsp) = build_initial_stack(TOP, &[], &[&fits], &[], [0; 16], b"").unwrap();
    assert_eq!(
        StackView { bytes: &bytes, rsp }.parse().envp[0].len(),
        ARG_MAX - 64
    );

    let aux: Vec<(u64, u64)> = (100..100 + MAX_AUXV as u64).map(|k| (k, k)).collect();
    assert!(matches!(
        build_initial_stack(TOP, &[], &[], &aux, [0; 16], b""),
        Err(Error::TooManyAuxEntries(_))
    ));
    assert_eq!(
        build_initial_stack(TOP, &[b"a\0b"], &[], &[], [0; 16], b""),
        Err(Error::NulInString)
    );
    assert_eq!(
        build_initial_stack(TOP, &[], &[b"A=\0"], &[], [0; 16], b""),
        Err(Error::NulInString)
    );
    assert_eq!(
        build_initial_stack(TOP, &[], &[], &[], [0; 16], b"x86\x0064"),
        Err(Error::NulInString)
    );
    for top in [0, 8, 64, 128] {
        assert_eq!(
            build_initial_stack(
                top,
                &[b"hello"],
                &[b"A=B"],
                &[(AT_UID, 0)],
                [0; 16],
                b"x86_64"
            ),
            Err(Error::StackTopTooLow)
        );
    }
}
