//! The C headers (`user/include/quest.h`, `user/include/vcpu.h`) and wrappers
//! (`user/libquest/c/quest.c`, `shmcomm.c`, `shmcomm_sys.c`) agree with this crate.
//!
//! The test writes a C program that includes the headers and prints, one `key=value` per line,
//! every syscall number, constant, errno value, struct size and alignment, and each field's
//! offset, size and signedness; it compiles the program with `musl-gcc -static` together with
//! `quest.c`, runs it on the host (a static musl binary runs on any x86-64 Linux) and compares
//! each line with the value computed from the Rust definitions. The C program is generated from
//! the Rust tables, so a constant missing from the header is a compile error, not a silent
//! skip. It also calls every wrapper: on Linux each Quest call must fail with `-1` and
//! `errno == ENOSYS`, which checks the wrappers' error convention.
//!
//! Skipped, with a message, only if `musl-gcc` is not installed (`cargo xtask setup` installs
//! it; CI has it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::mem::{align_of, offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use quest_abi::nr::{QUEST_BASE, QUEST_LAST};
use quest_abi::ps::{TASK_STATE_MASK, TASK_TERMINAL};
use quest_abi::shm::*;
use quest_abi::questv::{CpuExitStats, EXIT_REASONS, ExitStatsHeader};
use quest_abi::{
    AFFINITY_ANY, Errno, IO_VCPU, MAIN_VCPU, QuestSyscall, SchedParam, TASK_NAME_LEN, TaskInfo,
    TaskState, TpipeGuarantee, TpipeQos, VcpuInfo,
};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A C struct mirrored by a Rust struct: (C type, Rust size, Rust align, fields).
struct StructSpec {
    c_type: &'static str,
    size: usize,
    align: usize,
    /// (C field name, Rust offset, Rust size, signed)
    fields: Vec<(&'static str, usize, usize, bool)>,
}

macro_rules! field {
    ($t:ty, $rust:ident as $c:literal: $ft:ty, $signed:expr) => {
        ($c, offset_of!($t, $rust), size_of::<$ft>(), $signed)
    };
}

fn structs() -> Vec<StructSpec> {
    vec![
        StructSpec {
            c_type: "struct sched_param",
            size: size_of::<SchedParam>(),
            align: align_of::<SchedParam>(),
            fields: vec![
                field!(SchedParam, kind as "type": i32, true),
                field!(SchedParam, c as "C": i32, true),
                field!(SchedParam, t as "T": i32, true),
                field!(SchedParam, io_class as "io_class": i32, true),
                field!(SchedParam, affinity as "affinity": i32, true),
            ],
        },
        StructSpec {
            c_type: "struct task_info",
            size: size_of::<TaskInfo>(),
            align: align_of::<TaskInfo>(),
            fields: vec![
                field!(TaskInfo, id as "id": u32, false),
                field!(TaskInfo, process as "process": u32, false),
                field!(TaskInfo, parent as "parent": u32, false),
                field!(TaskInfo, vcpu as "vcpu": u32, false),
                field!(TaskInfo, pcpu as "pcpu": u32, false),
                field!(TaskInfo, status as "status": u32, false),
                field!(TaskInfo, nthreads as "nthreads": u32, false),
                field!(TaskInfo, thread as "thread": u32, false),
                // An array: its size is checked; signedness is not meaningful.
                ("name", offset_of!(TaskInfo, name), TASK_NAME_LEN, false),
            ],
        },
        StructSpec {
            c_type: "struct vcpu_info",
            size: size_of::<VcpuInfo>(),
            align: align_of::<VcpuInfo>(),
            fields: vec![
                field!(VcpuInfo, id as "id": u32, false),
                field!(VcpuInfo, pcpu as "pcpu": u32, false),
                field!(VcpuInfo, kind as "type": u32, false),
                field!(VcpuInfo, c as "C": u32, false),
                field!(VcpuInfo, t as "T": u32, false),
                field!(VcpuInfo, io_class as "io_class": u32, false),
                field!(VcpuInfo, num_tasks as "num_tasks": u32, false),
            ],
        },
        StructSpec {
            c_type: "struct tpipe_qos",
            size: size_of::<TpipeQos>(),
            align: align_of::<TpipeQos>(),
            fields: vec![
                field!(TpipeQos, c as "C": u32, false),
                field!(TpipeQos, lambda as "lambda": u32, false),
                field!(TpipeQos, b as "B": u32, false),
            ],
        },
        StructSpec {
            c_type: "struct boomerang_qos",
            size: size_of::<BoomerangQos>(),
            align: align_of::<BoomerangQos>(),
            fields: vec![
                field!(BoomerangQos, c as "C": u32, false),
                field!(BoomerangQos, lambda as "lambda": u32, false),
                field!(BoomerangQos, b as "B": u32, false),
                field!(BoomerangQos, packet as "packet": u32, false),
                field!(BoomerangQos, stages as "stages": u32, false),
            ],
        },
        StructSpec {
            c_type: "struct boomerang_plan",
            size: size_of::<BoomerangPlan>(),
            align: align_of::<BoomerangPlan>(),
            fields: vec![
                field!(BoomerangPlan, c as "C": u32, false),
                field!(BoomerangPlan, t as "T": u32, false),
                field!(BoomerangPlan, chunk as "chunk": u32, false),
                field!(BoomerangPlan, packets as "packets": u32, false),
                field!(BoomerangPlan, slots as "slots": u32, false),
                field!(BoomerangPlan, throughput as "throughput": u32, false),
                field!(BoomerangPlan, hop_delay_us as "hop_delay_us": u32, false),
                field!(BoomerangPlan, delay_us as "delay_us": u32, false),
                field!(BoomerangPlan, vcpu as "vcpu": i32, true),
            ],
        },
        StructSpec {
            c_type: "struct questv_exits_header",
            size: size_of::<ExitStatsHeader>(),
            align: align_of::<ExitStatsHeader>(),
            fields: vec![field!(ExitStatsHeader, cpus as "cpus": u32, false), field!(ExitStatsHeader, reasons as "reasons": u32, false)],
        },
        StructSpec {
            c_type: "struct questv_cpu_exits",
            size: size_of::<CpuExitStats>(),
            align: align_of::<CpuExitStats>(),
            fields: vec![
                field!(CpuExitStats, cpu as "cpu": u32, false),
                field!(CpuExitStats, sandbox as "sandbox": u32, false),
                field!(CpuExitStats, counts as "counts": [u64; EXIT_REASONS], false),
                field!(CpuExitStats, monitor_ns as "monitor_ns": [u64; EXIT_REASONS], false),
            ],
        },
        StructSpec {
            c_type: "struct tpipe_guarantee",
            size: size_of::<TpipeGuarantee>(),
            align: align_of::<TpipeGuarantee>(),
            fields: vec![
                field!(TpipeGuarantee, throughput as "throughput": u32, false),
                field!(TpipeGuarantee, delay_us as "delay_us": u32, false),
                field!(TpipeGuarantee, c as "C": u32, false),
                field!(TpipeGuarantee, t as "T": u32, false),
                field!(TpipeGuarantee, writer_vcpu as "writer_vcpu": u32, false),
                field!(TpipeGuarantee, reader_vcpu as "reader_vcpu": u32, false),
                field!(TpipeGuarantee, b as "B": u32, false),
            ],
        },
    ]
}

/// (C expression, expected value) for every constant.
fn constants() -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = vec![
        ("QUEST_NR_BASE".into(), QUEST_BASE.into()),
        ("QUEST_NR_LAST".into(), QUEST_LAST.into()),
        ("QUESTV_EXIT_REASONS".into(), EXIT_REASONS as i64),
        ("MAIN_VCPU".into(), MAIN_VCPU.into()),
        ("IO_VCPU".into(), IO_VCPU.into()),
        ("VCPU_AFFINITY_ANY".into(), AFFINITY_ANY.into()),
        ("QUEST_TASK_NAME_LEN".into(), TASK_NAME_LEN as i64),
        ("QUEST_TASK_TERMINAL".into(), TASK_TERMINAL.into()),
        ("QUEST_TASK_STATE_MASK".into(), TASK_STATE_MASK.into()),
        ("SHMCOMM_CREATE_CH".into(), SHMCOMM_CREATE_CH.into()),
        ("SHMCOMM_CONNECT_CH".into(), SHMCOMM_CONNECT_CH.into()),
        ("SHMCOMM_ASYNC_CH".into(), SHMCOMM_ASYNC_CH.into()),
        ("SHMCOMM_SYNC_CH".into(), SHMCOMM_SYNC_CH.into()),
        ("SHMCOMM_NONBLOCK_CH".into(), SHMCOMM_NONBLOCK_CH.into()),
        ("SHMCOMM_MAX_PACKET".into(), SHMCOMM_MAX_PACKET.into()),
        ("SHMCOMM_MAX_BUFFER".into(), SHMCOMM_MAX_BUFFER.into()),
        ("SHMCOMM_MAX_CHANNELS".into(), SHMCOMM_MAX_CHANNELS.into()),
    ];
    for c in QuestSyscall::ALL {
        v.push((format!("QUEST_NR_{}", c.name()), c.nr().into()));
    }
    for s in TaskState::ALL {
        v.push((s.c_name().into(), s.raw().into()));
    }
    // musl's <errno.h> against linux-raw-sys: both claim to be Linux's values.
    for e in Errno::KNOWN {
        v.push((e.name().unwrap().into(), e.raw().into()));
    }
    v
}

/// The wrappers, each called with harmless arguments: (C call, name).
const CALLS: &[(&str, &str)] = &[
    ("vcpu_create(&sp)", "vcpu_create"),
    ("vcpu_bind_task(1)", "vcpu_bind_task"),
    ("vcpu_getparams(&sp)", "vcpu_getparams"),
    ("vcpu_destroy(1, 0)", "vcpu_destroy"),
    ("ps_tasks(ti, 4)", "ps_tasks"),
    ("ps_vcpus(vi, 4)", "ps_vcpus"),
    ("task_kill(12345)", "task_kill"),
    ("shmcomm_open_send(153, SHMCOMM_CREATE_CH | SHMCOMM_ASYNC_CH, NULL, 4, -1, &ch)", "shmcomm_open_send"),
    ("shmcomm_open_receive(153, SHMCOMM_CONNECT_CH, NULL, 4, -1)", "shmcomm_open_receive"),
    ("(int)get_vshm_key(3)", "get_vshm_key"),
    ("shmcomm_close(3)", "shmcomm_close"),
    ("tpipe_open(&qos, fds, &g)", "tpipe_open"),
    ("(int)tpipe_write(3, &qos, 4)", "tpipe_write"),
    ("(int)tpipe_read(3, &qos, 4)", "tpipe_read"),
    ("tpipe_close(3)", "tpipe_close"),
    ("boomerang_stage(&bq, &bp)", "boomerang_stage"),
    ("(int)questv_exits(ti, sizeof ti)", "questv_exits"),
];

fn c_program() -> String {
    let mut c = String::from(
        "#include <errno.h>\n#include <stddef.h>\n#include <stdio.h>\n#include <pthread.h>\n\
         #include <quest.h>\n#include <vcpu.h>\n\
         #include <shmcomm_user.h>\n#include <shmcomm_internal.h>\n#include <tpipe.h>\n#include <boomerang.h>\n\n\
         #define SIGNED(T, f) (((__typeof__(((T *)0)->f))-1) < 0)\n\
         int main(void) {\n",
    );
    for (expr, _) in constants() {
        writeln!(
            c,
            "    printf(\"const.{expr}=%lld\\n\", (long long)({expr}));"
        )
        .unwrap();
    }
    for s in structs() {
        let t = s.c_type;
        writeln!(c, "    printf(\"{t}.sizeof=%zu\\n\", sizeof({t}));").unwrap();
        writeln!(c, "    printf(\"{t}.alignof=%zu\\n\", _Alignof({t}));").unwrap();
        for (f, _, _, _) in &s.fields {
            writeln!(
                c,
                "    printf(\"{t}.{f}.offset=%zu\\n\", offsetof({t}, {f}));"
            )
            .unwrap();
            writeln!(
                c,
                "    printf(\"{t}.{f}.size=%zu\\n\", sizeof((({t} *)0)->{f}));"
            )
            .unwrap();
            // Arrays (name, counts, monitor_ns) have no signedness to compare.
            if !["name", "counts", "monitor_ns"].contains(f) {
                writeln!(c, "    printf(\"{t}.{f}.signed=%d\\n\", SIGNED({t}, {f}));").unwrap();
            }
        }
    }
    c.push_str(
        "    struct sched_param sp = {.type = MAIN_VCPU, .C = 20, .T = 100};\n\
         struct task_info ti[4];\n    struct vcpu_info vi[4];\n\
             shmcomm_channel_t ch;\n    struct tpipe_qos qos = {.C = 1, .lambda = 1, .B = 2};\n\
             struct tpipe_guarantee g;\n    int fds[2];\n\
             struct boomerang_qos bq = {.C = 1, .lambda = 1, .B = 3, .packet = 1, .stages = 2};\n\
             struct boomerang_plan bp;\n",
    );
    for (call, name) in CALLS {
        writeln!(
            c,
            "    errno = 0;\n    {{ int r = {call}; \
             printf(\"call.{name}=%d errno=%d\\n\", r, errno); }}"
        )
        .unwrap();
    }
    c.push_str("    return 0;\n}\n");
    c
}

fn expected() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (expr, val) in constants() {
        m.insert(format!("const.{expr}"), val.to_string());
    }
    for s in structs() {
        let t = s.c_type;
        m.insert(format!("{t}.sizeof"), s.size.to_string());
        m.insert(format!("{t}.alignof"), s.align.to_string());
        for (f, off, size, signed) in &s.fields {
            m.insert(format!("{t}.{f}.offset"), off.to_string());
            m.insert(format!("{t}.{f}.size"), size.to_string());
            // Arrays (name, counts, monitor_ns) have no signedness to compare.
            if !["name", "counts", "monitor_ns"].contains(f) {
                m.insert(format!("{t}.{f}.signed"), (*signed as u8).to_string());
            }
        }
    }
    for (_, name) in CALLS {
        m.insert(
            format!("call.{name}"),
            format!("-1 errno={}", Errno::ENOSYS.raw()),
        );
    }
    m
}

fn have_musl_gcc() -> bool {
    Command::new("musl-gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn c_headers_agree_with_quest_abi() {
    if !have_musl_gcc() {
        eprintln!(
            "SKIPPED c_headers_agree_with_quest_abi: musl-gcc not found \
             (install Debian's musl-tools, or run `cargo xtask setup`)"
        );
        return;
    }
    let root = repo_root();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("quest-abi-c-header");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("probe.c");
    let exe = dir.join("probe");
    std::fs::write(&src, c_program()).unwrap();
    let out = Command::new("musl-gcc")
        .args(["-static", "-O2", "-Wall", "-Werror", "-I"])
        .arg(root.join("user/include"))
        .arg(&src)
        .arg(root.join("user/libquest/c/quest.c"))
        .arg(root.join("user/libquest/c/shmcomm.c"))
        .arg(root.join("user/libquest/c/shmcomm_sys.c"))
        .args(["-lpthread", "-o"])
        .arg(&exe)
        .output()
        .expect("running musl-gcc");
    assert!(
        out.status.success(),
        "musl-gcc failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().expect("running the probe");
    assert!(run.status.success(), "probe failed: {run:?}");
    let stdout = String::from_utf8(run.stdout).unwrap();
    let got: BTreeMap<String, String> = stdout
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').expect("key=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    let want = expected();
    let mut mismatches = Vec::new();
    for (k, v) in &want {
        match got.get(k) {
            Some(g) if g == v => {}
            Some(g) => mismatches.push(format!("{k}: C says {g}, quest-abi says {v}")),
            None => mismatches.push(format!("{k}: missing from the probe's output")),
        }
    }
    assert!(
        mismatches.is_empty(),
        "C headers disagree with quest-abi:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(got.len(), want.len(), "the probe printed unexpected keys");
    // Sanity: the test covered what it claims to.
    assert!(want.len() > 100, "only {} checks", want.len());
}

#[test]
fn generated_program_mentions_every_syscall() {
    let c = c_program();
    for s in QuestSyscall::ALL {
        assert!(c.contains(&format!("QUEST_NR_{}", s.name())));
    }
}
