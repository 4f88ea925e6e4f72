#!/bin/sh
# syscall-trace.sh: traces Quest-RS user programs on the host Linux, to list the syscalls
# the kernel must implement (docs/abi-syscalls.txt).
#
# Usage: user/tools/syscall-trace.sh OUT.txt "PROG [ARGS...]" ...
#
# How docs/abi-syscalls.txt is made (strace and script are Debian's strace and bsdutils):
#   cargo xtask cc --examples target/user-bin && cd target/user-bin &&
#   ../../user/tools/syscall-trace.sh ../../docs/abi-syscalls.txt ./hello_world ./fork_test \
#       ./thread "./hello_rust a b" ./vcpu_test
#
# Each program runs under `strace -f -ff` inside a pseudo-terminal (`script`), like a program on
# the Quest console: musl's stdio checks `ioctl(1, TIOCGWINSZ)` to decide whether stdout is
# line-buffered, and a pipe would hide that. For each program OUT.txt gets the distinct syscalls
# (with call counts over all its threads/processes) and the first 60 trace lines, one process
# or thread after another (`-ff` keeps each line a complete `syscall(args) = result`).
set -eu
out=$1; shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: > "$tmp/body"
: > "$tmp/all"
for cmd in "$@"; do
    name=$(basename "${cmd%% *}")
    rm -f "$tmp"/t.*
    script -qc "strace -f -ff -s 40 -o $tmp/t $cmd" /dev/null > "$tmp/stdout" 2>&1 || true
    {
        echo "=== $name (\$ $cmd)"
        echo "--- distinct syscalls (count over all threads/processes)"
        cat "$tmp"/t.* | grep -v -e '^+++' -e '^---' \
            | sed -n 's/^\([a-z_0-9]*\)(.*/\1/p' | sort | uniq -c | sort -k2 \
            | awk '{printf "  %-20s %s\n", $2, $1}' | tee -a "$tmp/all"
        echo "--- trace (first 60 lines; one pid/tid after another, pids in creation order)"
        for f in $(ls "$tmp"/t.* | sort -t. -k2 -n); do
            echo "[pid ${f##*.}]"
            cat "$f"
        done | head -n 60
        echo "--- program output"
        tr -d '\r' < "$tmp/stdout"
        echo
    } >> "$tmp/body"
done
{
    echo "Syscalls made by Quest-RS user programs, traced on the host Linux (x86-64) with"
    echo "user/tools/syscall-trace.sh (strace -f under a pseudo-terminal); how to regenerate it"
    echo "is at the top of that script. Programs built by \`cargo xtask cc --examples DIR\`."
    echo "See docs/abi.md for what they mean for the kernel. In short:"
    echo " - NOT in these traces but needed on Quest: clock_gettime (228). On Linux it goes through"
    echo "   the vDSO; Quest-RS maps no vDSO (no AT_SYSINFO_EHDR in the auxv), so musl and Rust std"
    echo "   (Instant::now in hello_rust) make the real syscall."
    echo " - ioctl(1, TIOCGWINSZ) must SUCCEED on the console: musl makes stdout line-buffered only"
    echo "   if it does; otherwise everything after the first line is buffered until exit (lost on"
    echo "   _exit or kill -c)."
    echo " - execve here is the host's exec: on Quest the kernel loader builds the initial stack"
    echo "   (argc, argv, envp, auxv with AT_PHDR/AT_PHNUM/AT_PAGESZ/AT_ENTRY/AT_RANDOM)."
    echo " - vcpu_test additionally calls the Quest syscalls (0x51550000 + n, see docs/abi.md)."
    echo
    echo "=== union over all programs: distinct syscalls (Linux x86-64 number)"
    awk '{print $1}' "$tmp/all" | sort -u | while read -r sc; do
        case $sc in
        syscall_0x*) nr="${sc#syscall_} (a Quest call: not a Linux number)" ;;
        *) nr=$(printf '#include <sys/syscall.h>\nSYS_%s\n' "$sc" | cpp -P 2>/dev/null | tail -n 1) ;;
        esac
        printf "  %-20s %s\n" "$sc" "$nr"
    done
    echo
    cat "$tmp/body"
} > "$out"
