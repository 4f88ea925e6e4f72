//! tokio_evloop: a program on tokio's multi-threaded runtime (two workers), as a user would
//! write one: timers (sleep, interval, timeout), an mpsc channel between tasks, many tasks
//! joined, `spawn_blocking`, a socket pair and a pipe read asynchronously. tokio drives all of
//! it through epoll, an eventfd (its waker), non-blocking descriptors, futexes and threads.
//!
//! Every line it prints ("tokio: ...") depends only on the program, not on timing, so the
//! output is the same on every kernel: the QEMU test compares Quest's with Linux's. As PID 1
//! (init of Debian's kernel, the reference run) it first opens /dev/console and powers the
//! machine off at the end.
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

async fn run() {
    println!("tokio: multi-threaded runtime up");

    // Timers.
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    println!("tokio: slept 20 ms: {}", t0.elapsed() >= Duration::from_millis(20));
    let mut iv = tokio::time::interval(Duration::from_millis(5));
    let t1 = Instant::now();
    for _ in 0..6 {
        iv.tick().await; // the first tick is immediate
    }
    println!("tokio: interval ticked 6 times in at least 25 ms: {}", t1.elapsed() >= Duration::from_millis(25));
    let never = std::future::pending::<()>();
    let r = tokio::time::timeout(Duration::from_millis(15), never).await;
    println!("tokio: timeout elapsed: {}", r.is_err());

    // A channel between tasks on the two workers.
    let (tx, mut rx) = mpsc::channel::<u64>(8);
    let producer = tokio::spawn(async move {
        for i in 1..=100 {
            tx.send(i).await.expect("receiver alive");
            if i % 25 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let mut sum = 0;
    while let Some(v) = rx.recv().await {
        sum += v;
    }
    producer.await.expect("producer");
    println!("tokio: channel carried 1..=100, sum {sum}");

    // Many tasks, each sleeping, joined in order.
    let tasks: Vec<_> = (0..32u64).map(|i| tokio::spawn(async move { tokio::time::sleep(Duration::from_millis(i % 7)).await; i * i })).collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    println!("tokio: 32 tasks joined, sum of squares {total}");

    // Blocking work off the workers.
    let f = tokio::task::spawn_blocking(|| fib(25)).await.expect("spawn_blocking");
    println!("tokio: spawn_blocking computed fib(25) = {f}");

    // A socket pair: one task writes in pieces, the other reads to the end.
    let (mut a, mut b) = tokio::net::UnixStream::pair().expect("socketpair");
    let writer = tokio::spawn(async move {
        for part in ["hello ", "from ", "a socket ", "pair"] {
            a.write_all(part.as_bytes()).await.expect("write");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        a.shutdown().await.expect("shutdown");
    });
    let mut got = String::new();
    b.read_to_string(&mut got).await.expect("read");
    writer.await.expect("writer");
    println!("tokio: socket pair read {got:?}");

    // A pipe: 200 KiB through a 64 KiB pipe (the writer waits for room).
    let (mut w, mut r) = tokio::net::unix::pipe::pipe().expect("pipe");
    let writer = tokio::spawn(async move {
        let block = vec![7u8; 4096];
        for _ in 0..50 {
            w.write_all(&block).await.expect("pipe write");
        }
    });
    let mut n = 0usize;
    let mut sum = 0u64;
    let mut buf = vec![0u8; 10000];
    loop {
        let k = r.read(&mut buf).await.expect("pipe read");
        if k == 0 {
            break;
        }
        n += k;
        sum += buf[..k].iter().map(|&x| u64::from(x)).sum::<u64>();
    }
    writer.await.expect("pipe writer");
    println!("tokio: pipe carried {n} bytes, sum {sum}");
    println!("tokio: done");
}

fn main() {
    // SAFETY (ring 3): plain libc calls with valid C strings.
    let init = unsafe { libc::getpid() } == 1;
    if init {
        unsafe {
            libc::mknod(c"/dev/console".as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(5, 1));
            let fd = libc::open(c"/dev/console".as_ptr(), libc::O_RDWR);
            for i in 0..3 {
                libc::dup2(fd, i);
            }
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run());
    drop(rt);
    if init {
        unsafe {
            libc::sync();
            libc::reboot(libc::RB_POWER_OFF);
        }
    }
}
