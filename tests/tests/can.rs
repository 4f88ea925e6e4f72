//! CAN on QEMU's kvaser_pci (SJA1000): two controllers on one `-object can-bus` (and two more on
//! a second bus for the gateway), frames across with every byte checked, standard and extended
//! identifiers, remote requests, filters, can-utils' programs (cansend, candump, canplayer) and
//! the seed's can-gw, a bad bit rate, a controller that is not there, error states and bus-off
//! recovery.
use anyhow::Result;
use quest_tests::{Config, Quest};

/// candump's lines for `ifname` (background output may follow a prompt on its line).
fn dump_lines(all: &str, ifname: &str) -> Vec<String> {
    let pat = format!("  {ifname}  ");
    all.lines().filter_map(|l| l.find(&pat).map(|i| l[i..].to_string())).collect()
}

fn kvasers(cfg: &mut Config, buses: &[usize]) {
    let mut made = Vec::new();
    for &b in buses {
        if !made.contains(&b) {
            cfg.extra_args.extend(["-object".into(), format!("can-bus,id=canbus{b}")]);
            made.push(b);
        }
        cfg.extra_args.extend(["-device".into(), format!("kvaser_pci,canbus=canbus{b}")]);
    }
}

#[test]
fn frames_cross_the_bus_with_filters_tools_and_gateway() -> Result<()> {
    let mut cfg = Config::from_env(false)?;
    kvasers(&mut cfg, &[0, 0, 1, 1]);
    // Four IO VCPUs at 8 % leave no room for init.conf's 20 % vcpu_test (refused at
    // admission, with a message): do not wait for it.
    cfg.settle = None;
    let mut q = Quest::boot(&cfg)?;
    let boot = q.output();
    for n in 0..4 {
        assert!(boot.contains(&format!("can{n}: kvaser_pci at ")), "{boot}");
    }
    assert!(boot.contains("(SJA1000, PeliCAN), 500 kbit/s, INTx, IRQ"), "{boot}");
    // lspci in the user shell: the four cards, and with -v their I/O BARs.
    let out = q.shell("lspci")?;
    assert_eq!(out.matches("Unassigned class [ff00]: 10e8:8406 (rev 00)").count(), 4, "{out}");
    assert!(!out.contains("BAR"), "{out}");
    let out = q.shell("lspci -v")?;
    assert!(out.contains("via ECAM (ACPI MCFG)") && out.matches("BAR1 I/O ports 0x").count() == 4, "{out}");

    // Every byte value 0x00..0xff crosses, in standard and extended frames; plus an empty
    // frame and a remote request.
    q.shell("nowait candump -n 36 -s can1")?;
    let mut want = Vec::new();
    for i in 0..32u32 {
        let data: Vec<u8> = (0..8).map(|k| (i * 8 + k) as u8).collect();
        let hex: String = data.iter().map(|b| format!("{b:02X}")).collect();
        let spaced: String = data.iter().map(|b| format!(" {b:02X}")).collect();
        let (id, shown) = if i % 2 == 0 { (format!("{:03X}", 0x100 + i), format!("{:03X}", 0x100 + i)) } else { (format!("{:08X}", 0x1234_5600 + i), format!("{:08X}", 0x1234_5600 + i)) };
        q.shell(&format!("cansend can0 {id}#{hex}"))?;
        want.push(format!("  can1  {shown}   [8] {spaced}"));
    }
    q.shell("cansend can0 7FF#")?;
    want.push("  can1  7FF   [0] ".into());
    // A remote request with length 0: QEMU's SJA1000 model stores the data bytes of a remote
    // frame with a non-zero length in its FIFO but releases only the header, which shifts
    // every later frame (a bug of the model, hw/net/can/can_sja1000.c, not of the driver).
    q.shell("cansend can0 000#R")?;
    want.push("  can1  000   [0]  remote request".into());
    q.shell("cansend can0 1FFFFFFF#11.22")?;
    want.push("  can1  1FFFFFFF   [2]  11 22".into());
    q.shell("cansend can0 00000000#FF")?;
    want.push("  can1  00000000   [1]  FF".into());
    let out = q.shell("wait")?;
    let all = q.output().replace('\r', "");
    assert_eq!(dump_lines(&all, "can1"), want, "{out}");
    assert!(all.contains("candump: can1 500000 bit/s error-active: rx 36, filtered 0, overruns 0, dropped 0, tx 0"), "{all}");

    // A standard filter: only 0x123 passes (the controller's acceptance registers drop the
    // rest, so they are not even received), then an extended one.
    q.shell("nowait candump -n 2 -s can1,123:7FF")?;
    for f in ["124#01", "123#AA", "12345678#02", "523#03", "123#BB"] {
        q.shell(&format!("cansend can0 {f}"))?;
    }
    q.shell("wait")?;
    q.shell("nowait candump -n 1 -s can1,12345678:1FFFFFFF")?;
    for f in ["12345679#01", "123#02", "12345678#CC"] {
        q.shell(&format!("cansend can0 {f}"))?;
    }
    q.shell("wait")?;
    let all = q.output().replace('\r', "");
    let got: Vec<String> = dump_lines(&all, "can1").into_iter().skip(36).collect();
    assert_eq!(got, ["  can1  123   [1]  AA", "  can1  123   [1]  BB", "  can1  12345678   [1]  CC"], "{all}");
    assert!(all.contains("rx 38, filtered 0,"), "the standard filter let another frame into the controller:\n{all}");
    assert!(all.contains("rx 39, filtered 0,"), "{all}");

    // canplayer replays a candump log; candump -L writes that format.
    q.shell("nowait candump -L -n 3 can1")?;
    let out = q.shell("canplayer -I /boot/can.log can0=can0")?;
    assert!(out.contains("canplayer: 3 frame(s) sent"), "{out}");
    q.shell("wait")?;
    let all = q.output().replace('\r', "");
    let logged: Vec<&str> = all.lines().filter_map(|l| l.find(") can1 ").map(|i| &l[i + 2..])).collect();
    assert_eq!(logged, ["can1 100#0102030405060708", "can1 12345678#AABB", "can1 7FF#R"], "{all}");

    // can-gw: logs what arrives on can1 (bus 0) and forwards it to can2 (bus 1), identifier
    // XOR 0x10; candump on can3 (bus 1) sees the forwarded frames.
    q.shell("nowait candump -n 2 can3")?;
    q.shell("nowait can-gw -n 2 -x 10 can1 can2")?;
    q.shell("cansend can0 222#DEADBEEF")?;
    q.shell("cansend can0 0ABCDEF0#0102")?;
    q.shell("wait")?;
    q.shell("wait")?;
    let all = q.output().replace('\r', "");
    assert!(all.contains(") can1 222#DEADBEEF") && all.contains(") can1 0ABCDEF0#0102"), "{all}");
    assert!(all.contains("can-gw: 2 frame(s) forwarded"), "{all}");
    assert!(all.contains("  can3  232   [4]  DE AD BE EF") && all.contains("  can3  0ABCDEE0   [2]  01 02"), "{all}");

    // Bit rates: a good one is set, a bad one refused with a clear error; bad frames too; a
    // controller that does not exist.
    assert_eq!(q.shell("cansend -b 1000000 can0 123#00")?.trim(), "");
    let out = q.shell("cansend -b 123457 can0 123#00")?;
    assert!(out.contains("cansend: bit rate 123457: Invalid argument"), "{out}");
    let out = q.shell("cansend -b 2000000 can0 123#00")?;
    assert!(out.contains("cansend: bit rate 2000000: Invalid argument"), "{out}");
    let out = q.shell("cansend can0 1234#00")?;
    assert!(out.contains("cansend: bad CAN frame '1234#00'"), "{out}");
    let out = q.shell("candump can7")?;
    assert!(out.contains("candump: /dev/can7: No such device"), "{out}");
    q.power_off_ok()?;
    Ok(())
}

#[test]
fn no_controller_and_bus_off_recovery() -> Result<()> {
    // Without a controller: a clear error, nothing else happens.
    let cfg = Config::from_env(false)?;
    let mut q = Quest::boot(&cfg)?;
    let out = q.shell("candump can0")?;
    assert!(out.contains("candump: /dev/can0: No such device"), "{out}");
    let out = q.shell("cansend can0 123#00")?;
    assert!(out.contains("cansend: /dev/can0: No such device"), "{out}");
    q.power_off_ok()?;

    // Error states and bus-off: the driver is fed what a real SJA1000 reports (QEMU's model
    // has no error counters), recovers, and its next frame crosses the real emulated bus.
    let mut cfg = Config::from_env(true)?;
    kvasers(&mut cfg, &[0, 0]);
    let mut q = Quest::boot(&cfg)?;
    let out = q.shell("ktest canerr")?;
    for want in [
        "canerr: tx errors 100: state 1",
        "canerr: tx errors 130: state 2",
        "canerr: bus-off: state 3, bus-off count 1",
        "canerr: send in bus-off: Err(100)",
        "canerr: after restart: state 0, restarts 1, tx errors 0",
        "canerr: send after restart: Ok(()); can1 received the frame intact",
    ] {
        assert!(out.contains(want), "{want}:\n{out}");
    }
    q.power_off_ok()?;
    Ok(())
}

/// The benchmark program `cargo xtask bench` runs (under -icount, two controllers at 1 Mbit/s):
/// it runs, finds a loss-free rate and reports the interrupt-to-read latency. Numbers are not
/// judged here beyond being present (the bench reports them).
#[test]
fn canbench_reports_latency_and_loss_free_rate() -> Result<()> {
    let mut cfg = Config::from_env(false)?;
    cfg.icount = true;
    cfg.timeout = cfg.timeout.max(std::time::Duration::from_secs(600));
    kvasers(&mut cfg, &[0, 0]);
    let mut q = Quest::boot(&cfg)?;
    let out = q.shell("canbench --quick")?;
    let r = quest_tests::bench::parse(&out);
    assert!(r.done, "{out}");
    let lat = r.get("can_rx_latency").unwrap_or_else(|| panic!("{out}"));
    assert!(lat.n > 0 && lat.median > 0 && lat.max >= lat.median, "{out}");
    let rate = r.get("can_rate_1mbit").unwrap_or_else(|| panic!("{out}"));
    assert!(rate.median >= 1000, "{out}");
    q.power_off_ok()?;
    Ok(())
}
