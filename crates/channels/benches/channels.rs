//! Host benchmarks: single-thread write+read latency of both channels for small, medium and
//! page-sized slots, and cross-thread throughput.
//!
//! `cargo bench -p channels --bench channels` (add `-- --quick` for a short run).

// Under `--cfg loom` the atomics are loom's (usable only inside a loom model): nothing to
// benchmark then, but `cargo clippy --all-targets` should still build.
#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
criterion::criterion_main!(bench::benches);

#[cfg(not(loom))]
mod bench {
    use channels::sync::AtomicU64;
    use channels::{
        Error, Fifo, FifoConsumer, FifoProducer, FourSlot, FourSlotReader, FourSlotWriter,
    };
    use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
    use std::hint::black_box;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;
    use std::time::{Duration, Instant};

    const SIZES: [usize; 3] = [8, 64, 4096];

    fn region(words: usize) -> Vec<AtomicU64> {
        (0..words).map(|_| AtomicU64::new(0)).collect()
    }

    /// One write then one read, same thread (the cost of the operations themselves, including
    /// the two SeqCst fences).
    fn four_slot_write_read(c: &mut Criterion) {
        let mut g = c.benchmark_group("four_slot/write+read");
        for size in SIZES {
            let r = region(FourSlot::region_words(size).unwrap());
            FourSlot::format(&r, size).unwrap();
            let mut tx = FourSlotWriter::attach(&r).unwrap();
            let mut rx = FourSlotReader::attach(&r).unwrap();
            let v = vec![0x5au8; size];
            let mut buf = vec![0u8; size];
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::from_parameter(size), |b| {
                b.iter(|| {
                    tx.write(black_box(&v)).unwrap();
                    black_box(rx.read(&mut buf).unwrap());
                })
            });
        }
        g.finish();
    }

    /// One push then one pop, same thread.
    fn fifo_push_pop(c: &mut Criterion) {
        let mut g = c.benchmark_group("fifo/push+pop");
        for size in SIZES {
            let r = region(Fifo::region_words(size, 16).unwrap());
            Fifo::format(&r, size, 16).unwrap();
            let mut tx = FifoProducer::attach(&r).unwrap();
            let mut rx = FifoConsumer::attach(&r).unwrap();
            let v = vec![0x5au8; size];
            let mut buf = vec![0u8; size];
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::from_parameter(size), |b| {
                b.iter(|| {
                    tx.try_push(black_box(&v)).unwrap();
                    black_box(rx.try_pop(&mut buf).unwrap());
                })
            });
        }
        g.finish();
    }

    /// Cross-thread FIFO throughput: a producer thread pushes `iters` messages through a
    /// 64-slot ring while this thread pops them (spinning, yielding after a while).
    fn fifo_cross_thread(c: &mut Criterion) {
        let mut g = c.benchmark_group("fifo/cross-thread");
        for size in [64usize, 4096] {
            let r = region(Fifo::region_words(size, 64).unwrap());
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::from_parameter(size), |b| {
                b.iter_custom(|iters| {
                    Fifo::format(&r, size, 64).unwrap();
                    let v = vec![0x5au8; size];
                    let mut buf = vec![0u8; size];
                    thread::scope(|s| {
                        let start = Instant::now();
                        s.spawn(|| {
                            let mut tx = FifoProducer::attach(&r).unwrap();
                            for _ in 0..iters {
                                let mut spins = 0u32;
                                while let Err(Error::Full) = tx.try_push(&v) {
                                    spins += 1;
                                    if spins > 100 {
                                        thread::yield_now();
                                    }
                                }
                            }
                        });
                        let mut rx = FifoConsumer::attach(&r).unwrap();
                        let mut got = 0;
                        let mut spins = 0u32;
                        while got < iters {
                            match rx.try_pop(&mut buf) {
                                Ok(_) => got += 1,
                                Err(_) => {
                                    spins += 1;
                                    if spins > 100 {
                                        thread::yield_now();
                                        spins = 0;
                                    }
                                }
                            }
                        }
                        start.elapsed()
                    })
                })
            });
        }
        g.finish();
    }

    /// Four-slot reads while another thread writes continuously (the reader's cost under
    /// contention; the writer never waits).
    fn four_slot_cross_thread(c: &mut Criterion) {
        let mut g = c.benchmark_group("four_slot/read-under-writer");
        for size in [64usize, 4096] {
            let r = region(FourSlot::region_words(size).unwrap());
            FourSlot::format(&r, size).unwrap();
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::from_parameter(size), |b| {
                b.iter_custom(|iters| {
                    let stop = AtomicBool::new(false);
                    thread::scope(|s| {
                        s.spawn(|| {
                            let mut tx = FourSlotWriter::attach(&r).unwrap();
                            let v = vec![0x5au8; size];
                            while !stop.load(Ordering::Relaxed) {
                                tx.write(&v).unwrap();
                            }
                        });
                        let mut rx = FourSlotReader::attach(&r).unwrap();
                        let mut buf = vec![0u8; size];
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(rx.read(&mut buf).unwrap());
                        }
                        let t = start.elapsed();
                        stop.store(true, Ordering::Relaxed);
                        t
                    })
                })
            });
        }
        g.finish();
    }

    fn config() -> Criterion {
        Criterion::default()
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(30)
    }

    criterion_group! {
        name = benches;
        config = config();
        targets = four_slot_write_read, fifo_push_pop, fifo_cross_thread, four_slot_cross_thread
    }
}
