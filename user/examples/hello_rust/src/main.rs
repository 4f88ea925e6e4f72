//! `hello_rust`: a Rust `std` program for Quest-RS.
//!
//! Built as a static ELF64 for `x86_64-unknown-linux-musl` and run by the Quest-RS kernel from
//! `/boot`, it exercises the parts of `std` a real program needs — `println!`, `std::env::args`,
//! `Vec`, `std::thread`, `std::sync::mpsc`, `std::time::Instant` — and prints only deterministic
//! lines, so a test can check them exactly:
//!
//! ```text
//! Hello from Rust on Quest!
//! args: ["hello_rust", "a", "b"]
//! vec: len 100, sum 4950
//! thread 0 done
//! thread 1 done
//! thread 2 done
//! thread 3 done
//! sum from 4 threads: 500500
//! elapsed ok
//! bye
//! ```
//!
//! (`args` shows the program name as passed in `argv[0]`; the thread lines are printed by the
//! main thread in thread order, so their order is fixed too.)

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Number of worker threads.
const THREADS: u64 = 4;
/// The workers together sum `1..=N`.
const N: u64 = 1000;

/// Sums `1..=N` split into `THREADS` contiguous ranges, one worker thread each, the partial sums
/// sent back over one channel. Returns the total and the worker indices in the order the main
/// thread joined them.
fn threaded_sum() -> (u64, Vec<u64>) {
    let (tx, rx) = mpsc::channel::<(u64, u64)>();
    let chunk = N / THREADS;
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let tx = tx.clone();
            thread::spawn(move || {
                let lo = i * chunk + 1;
                let hi = if i == THREADS - 1 { N } else { (i + 1) * chunk };
                tx.send((i, (lo..=hi).sum())).expect("main thread hung up");
            })
        })
        .collect();
    drop(tx);
    let mut partial = vec![0u64; THREADS as usize];
    for (i, s) in rx {
        partial[i as usize] = s;
    }
    let mut joined = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        h.join().expect("worker panicked");
        joined.push(i as u64);
    }
    (partial.iter().sum(), joined)
}

fn main() {
    println!("Hello from Rust on Quest!");
    let args: Vec<String> = std::env::args().collect();
    println!("args: {args:?}");

    let v: Vec<u64> = (0..100).collect();
    println!("vec: len {}, sum {}", v.len(), v.iter().sum::<u64>());

    let start = Instant::now();
    let (sum, joined) = threaded_sum();
    for i in joined {
        println!("thread {i} done");
    }
    println!("sum from {THREADS} threads: {sum}");
    assert_eq!(sum, N * (N + 1) / 2);

    thread::sleep(Duration::from_millis(10));
    let elapsed = start.elapsed();
    if elapsed >= Duration::from_millis(10) && elapsed < Duration::from_secs(60) {
        println!("elapsed ok");
    } else {
        println!("elapsed wrong: {elapsed:?}");
    }
    shmcomm_round_trip();
    println!("bye");
}

/// libquest's shmcomm API: a sync channel between two threads (ENOSYS on plain Linux).
fn shmcomm_round_trip() {
    use libquest::shmcomm::{Channel, Kind};
    let tx = match Channel::create_send(4242, Kind::Sync(2), 8) {
        Ok(c) => c,
        Err(e) => {
            println!("shmcomm: unavailable ({e:?})");
            return;
        }
    };
    let rx = Channel::connect_receive(4242, 8).expect("connect");
    let reader = thread::spawn(move || {
        let mut total = 0u64;
        let mut b = [0u8; 8];
        while rx.read(&mut b).expect("read") == 8 {
            total += u64::from_le_bytes(b);
        }
        total
    });
    for i in 1..=10u64 {
        tx.write(&i.to_le_bytes()).expect("write");
    }
    drop(tx); // the reader sees the end of the stream
    println!("shmcomm: rust sync channel sum {}", reader.join().expect("reader"));
}
