#!/bin/sh
# host-test.sh: builds the shell and user_init for the host Linux with musl-gcc and checks
# them there, with a temporary directory of host programs standing in for /boot
# (QUEST_BOOT). Exits non-zero if any check fails.
#
#   user/sysprogs/host-test.sh            (from anywhere; needs musl-gcc, timeout)
#
# What it checks:
#   1. both programs compile warning-free (-Wall -Wextra -Werror; -std=c11 -pedantic too);
#   2. the shell: foreground programs and their arguments, unknown programs, EOF (status 0),
#      usage messages, long lines, too many words, ctrl-c bytes, `help`, and `ps` on a
#      kernel without the Quest calls ("ps: not supported on this kernel (...)");
#   3. the shell: nowait / wait / kill -c, "shell: task N has exited" reports, and that it
#      stays interactive while background tasks run;
#   4. the ps -t / ps -v / kill -t output formats, with test/fake_quest.c standing in for
#      the Quest calls (the records of the tutorial's last ps slide);
#   5. garbage input does not crash the shell;
#   6. user_init: init.conf parsing and errors, background start, the shell restart, the
#      missing-init.conf and missing-shell cases.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
boot=$tmp/boot
mkdir -p "$boot"
failures=0

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

pass() {
    echo "ok:   $*"
}

# check NAME EXPECTED ACTUAL: the two files must be equal.
check() {
    if diff -u "$2" "$3" >"$tmp/diff"; then
        pass "$1"
    else
        fail "$1"
        cat "$tmp/diff"
    fi
}

# Replaces task ids by T1, T2, ... in order of first appearance (pids differ per run).
norm_ids() {
    awk '{
        out = ""
        while (match($0, /task [0-9]+/)) {
            id = substr($0, RSTART + 5, RLENGTH - 5)
            if (!(id in seen)) seen[id] = "T" (++n)
            out = out substr($0, 1, RSTART - 1) "task " seen[id]
            $0 = substr($0, RSTART + RLENGTH)
        }
        print out $0
    }'
}

# ---- 1. build ------------------------------------------------------------------------
cflags="-static -fno-pie -no-pie -O2 -Wall -Wextra -Werror -Wno-main -I $root/user/include"
build() { # OUT SOURCES... (EXTRA_CFLAGS from the environment)
    out=$1
    shift
    # shellcheck disable=SC2086
    if musl-gcc $cflags ${EXTRA_CFLAGS:-} "$@" -lpthread -o "$out" 2>"$tmp/cc.err"; then
        pass "build $(basename "$out")"
    else
        fail "build $(basename "$out")"
        cat "$tmp/cc.err"
        exit 1
    fi
}
build "$tmp/shell" "$here/shell.c" "$root/user/libquest/c/quest.c"
build "$tmp/user_init" "$here/user_init.c" "$root/user/libquest/c/quest.c"
build "$tmp/shell_fake" "$here/shell.c" "$here/test/fake_quest.c"
EXTRA_CFLAGS=-Wno-unused-parameter build "$boot/hello_world" "$root/user/examples/hello_world.c"
if musl-gcc -std=c11 -pedantic -Wall -Wextra -Werror -fsyntax-only -I "$root/user/include" \
    "$here/shell.c" "$here/user_init.c" 2>"$tmp/cc.err"; then
    pass "C11 -pedantic"
else
    fail "C11 -pedantic"
    cat "$tmp/cc.err"
fi
for p in echo sleep true cat tr; do # host programs (not the shell's built-in echo)
    for d in /bin /usr/bin; do
        if [ -x "$d/$p" ]; then
            ln -s "$d/$p" "$boot/$p"
            break
        fi
    done
    [ -e "$boot/$p" ] || { fail "no host program $p"; exit 1; }
done

# run_shell BIN: runs BIN with $tmp/in as stdin; its output (stdout and stderr) goes to
# $tmp/out, its exit status to $rc. (Not in a pipeline: that would be a subshell.)
run_shell() {
    QUEST_BOOT=$boot timeout 20 "$1" <"$tmp/in" >"$tmp/out" 2>&1
    rc=$?
}

# ---- 2. foreground, errors, input handling --------------------------------------------
long=$(head -c 20000 /dev/zero | tr '\0' x)
many=$(seq 1 1100 | tr '\n' ' ')
{
    printf 'hello_world\n'
    printf 'echo a  b\tc\n'
    printf '\n'
    printf '   \n'
    printf 'nosuch x\n'
    printf '%s/echo absolute path\n' "$boot"
    printf 'ps -t\n'
    printf 'ps -v 0\n'
    printf 'ps\nps -x\nps -t 1x\nps -t 1 2\n'
    printf 'kill\nkill -t\nkill -t -1\nkill -c\nkill -t 0\n'
    printf 'nowait\nwait\nwait x\n'
    printf 'echo %s\n' "$long"
    printf 'echo %s\n' "$many"
    printf 'echo ctrl\003\n'
    printf 'echo x\003echo after ctrl-c\n'
    printf 'help\n'
    printf 'echo last line without newline'
} >"$tmp/in"
run_shell "$tmp/shell"
sed "s#$boot#BOOT#g" "$tmp/out" >"$tmp/got"
cat >"$tmp/want" <<'EOF'
>Hello World!
>a b c
>>>shell: nosuch: No such file or directory
>absolute path
>ps: not supported on this kernel (Function not implemented)
>ps: not supported on this kernel (Function not implemented)
>usage: ps -t [TASK_ID] | ps -v [VCPU_ID]
>usage: ps -t [TASK_ID] | ps -v [VCPU_ID]
>usage: ps -t [TASK_ID] | ps -v [VCPU_ID]
>usage: ps -t [TASK_ID] | ps -v [VCPU_ID]
>usage: kill -t TASK_ID | kill -c
>usage: kill -t TASK_ID | kill -c
>usage: kill -t TASK_ID | kill -c
>kill: no task to kill
>kill: no such task 0
>usage: nowait PROGRAM [ARGS...]
>wait: no background task
>usage: wait
>shell: line too long (at most 16384 characters)
>shell: too many arguments (at most 1024 words)
>>
>after ctrl-c
>Quest shell built-ins:
  ps -t [TASK_ID]        list the tasks (or one task)
  ps -v [VCPU_ID]        list the VCPUs (or one VCPU)
  kill -t TASK_ID        mark a task for termination
  kill -c                mark the latest task started by the shell for termination
  nowait PROGRAM [ARGS]  run BOOT/PROGRAM in the background
  wait                   wait for the latest background task
  cd [DIRECTORY]         change the working directory
  help                   this list
Any other PROGRAM [ARGS] runs BOOT/PROGRAM in the foreground; quoting ('...', "...", \),
$NAME and $?, redirections (< > >>), pipes (|) and lists (; && ||) work as in sh.
>last line without newline
>
EOF
check "shell: foreground and errors" "$tmp/want" "$tmp/got"
[ "$rc" = 0 ] && pass "shell: EOF exits with 0" || fail "shell: exit status $rc at EOF"

# ---- 2b. quoting, variables, redirections, pipes --------------------------------------
{
    printf "echo 'a  b' \"c \$QV\" d\\\\ e '\$QV'\n"
    printf 'echo one two | tr o 0\n'
    printf 'echo to a file > %s/f\n' "$tmp"
    printf 'echo appended >> %s/f\n' "$tmp"
    printf 'cat < %s/f | cat | tr a A\n' "$tmp"
    printf 'nosuch\n'
    printf 'echo status $?\n'
    printf 'true\n'
    printf 'echo status $? ${QV}x $NOSUCHVAR.\n'
    printf "echo 'unterminated\n"
    printf 'echo x |\n'
    printf 'cat <\n'
    printf 'cd /\n'
    printf 'cd /nonexistent\n'
    printf 'echo one; echo two ; true && echo and || echo not-or\n'
    printf "nosuch && echo not-and || echo 'or;&&' ; echo \"end; \$?\"\n"
} >"$tmp/in"
QV=value run_shell "$tmp/shell"
sed "s#$boot#BOOT#g; s#$tmp#TMP#g" "$tmp/out" >"$tmp/got"
cat >"$tmp/want" <<'EOF'
>a  b c value d e $QV
>0ne tw0
>>>to A file
Appended
>shell: nosuch: No such file or directory
>status 127
>>status 0 valuex .
>shell: syntax error: unterminated quote
>shell: syntax error: a command is missing
>shell: syntax error: a redirection without a file name
>>cd: /nonexistent: No such file or directory
>one
two
and
>shell: nosuch: No such file or directory
or;&&
end; 0
>
EOF
check "shell: quoting, variables, redirections, pipes, lists" "$tmp/want" "$tmp/got"

# ---- 3. background tasks --------------------------------------------------------------
start=$(date +%s)
{
    printf 'nowait sleep 0.3\n'
    printf 'wait\n'
    printf 'nowait sleep 30\n'
    printf 'echo still active\n'
    printf 'kill -c\n'
    printf 'wait\n'
    printf 'nowait true\n'
    printf 'sleep 0.5\n'
    printf 'kill -c\n'
    printf 'nowait sleep 0.5\n'
    printf 'nowait sleep 30\n'
    printf 'kill -c\n'
    printf 'wait\n'
    printf 'wait\n'
    printf 'wait\n'
    printf 'nowait sleep 0.2\n'
    printf 'sleep 0.6\n'
} >"$tmp/in"
run_shell "$tmp/shell"
elapsed=$(($(date +%s) - start))
norm_ids <"$tmp/out" >"$tmp/got"
cat >"$tmp/want" <<'EOF'
>>shell: task T1 has exited
>>still active
>kill: task T2 marked for termination
>shell: task T2 has exited
>>shell: task T3 has exited
>kill: no task to kill
>>>kill: task T4 marked for termination
>shell: task T4 has exited
>shell: task T5 has exited
>wait: no background task
>>shell: task T6 has exited
>
EOF
check "shell: nowait, wait, kill -c" "$tmp/want" "$tmp/got"
[ "$elapsed" -lt 10 ] && pass "shell: background tasks do not block (${elapsed}s)" ||
    fail "shell: took ${elapsed}s: a background task was waited for"

# A background program that does not exist: the child's message and the exit report (the
# child's message races with the next prompt, so only the lines are checked).
printf 'nowait nosuch\nsleep 0.3\n' >"$tmp/in"
run_shell "$tmp/shell"
if grep -q 'shell: nosuch: No such file or directory$' "$tmp/out" &&
    grep -q '^>*shell: task [0-9]* has exited$' "$tmp/out"; then
    pass "shell: nowait of an unknown program"
else
    fail "shell: nowait of an unknown program"
    cat "$tmp/out"
fi

# ---- 4. ps and kill -t formats (fake Quest calls) ---------------------------------------
printf 'ps -t\nps -v\nps -t 10\nps -v 1\nps -t 42\nps -v 7\nkill -t 9\nps -t\nkill -t 999\nkill -t 8\n' \
    >"$tmp/in"
run_shell "$tmp/shell_fake"
cat >"$tmp/want" <<'EOF'
>
4 tasks
  ID          Name Parent VCPU PCPU      Status Thread
   8 /boot/user_init      8    0    0     running      1
   9  /boot/thread      9    0    0     waiting      3
  10  /boot/thread      9    0    0    sleeping      1
  11                    9    0    0    sleeping      2
>
2 VCPUs
VCPU PCPU Type      C      T  num_tasks
  0    0 main      5000   50000      4
  1    1 io          10     100      0
>
1 tasks
  ID          Name Parent VCPU PCPU      Status Thread
  10  /boot/thread      9    0    0    sleeping      1
>
1 VCPUs
VCPU PCPU Type      C      T  num_tasks
  1    1 io          10     100      0
>ps: no such task 42
>ps: no such VCPU 7
>>
4 tasks
  ID          Name Parent VCPU PCPU      Status Thread
   8 /boot/user_init      8    0    0     running      1
   9  /boot/thread      9    0    0 waiting/terminal      3
  10  /boot/thread      9    0    0 sleeping/terminal      1
  11                    9    0    0 sleeping/terminal      2
>kill: no such task 999
>kill: task 8: Operation not permitted
>
EOF
check "shell: ps -t / ps -v / kill -t formats" "$tmp/want" "$tmp/out"

# ---- 5. garbage input ---------------------------------------------------------------------
mkdir -p "$tmp/empty"
# Without '<' and '>' (random redirections would create and truncate files on the host; a
# random `cd` would move them anywhere) and in a directory of its own all the same.
mkdir -p "$tmp/garbage"
(cd "$tmp/garbage" && head -c 200000 /dev/urandom | tr -d '<>' | QUEST_BOOT=$tmp/empty timeout 20 "$tmp/shell" >/dev/null 2>&1)
rc=$?
[ "$rc" = 0 ] && pass "shell: survives random input" || fail "shell: status $rc on random input"

# ---- 6. user_init --------------------------------------------------------------------------
cp "$tmp/shell" "$boot/shell"
cat >"$boot/init.conf" <<'EOF'
# started at boot
echo started from init.conf

   # an indented comment
hello_world @20/100
@5/10
echo x @abc
echo @1/2 y
/bin/echo a path
echo bad @20/10
nosuchprog
EOF
printf 'echo from the shell\n' | QUEST_BOOT=$boot timeout 2.5 "$tmp/user_init" >"$tmp/out" 2>&1
for line in \
    'user_init: init.conf line 5: cannot create VCPU 20/100: Function not implemented; hello_world not started' \
    'user_init: init.conf line 6: no program' \
    "user_init: init.conf line 7: bad VCPU parameters '@abc' (expected @C/T with 0 < C <= T)" \
    "user_init: init.conf line 8: '@1/2' must be the last word" \
    "user_init: init.conf line 9: '/bin/echo': not a program name in $boot" \
    "user_init: init.conf line 10: bad VCPU parameters '@20/10' (expected @C/T with 0 < C <= T)" \
    "user_init: $boot/nosuchprog: No such file or directory" \
    'started from init.conf' \
    'from the shell' \
    'user_init: shell exited with status 0; restarting'; do
    grep -qxF -- "$line" "$tmp/out" || grep -qF -- ">$line" "$tmp/out" ||
        { fail "user_init: missing line: $line"; cat "$tmp/out"; }
done
grep -qE '^(>)?user_init: task [0-9]+ \(echo\) has exited with status 0$' "$tmp/out" &&
    grep -qE '^(>)?user_init: task [0-9]+ \(nosuchprog\) has exited with status 127$' "$tmp/out" ||
    { fail "user_init: init.conf programs not reaped"; cat "$tmp/out"; }
n=$(grep -c 'shell exited with status 0; restarting' "$tmp/out")
[ "$n" -ge 1 ] && [ "$n" -le 4 ] && pass "user_init: init.conf, restarts ($n in 2.5 s)" ||
    fail "user_init: $n shell restarts in 2.5 s"

rm "$boot/init.conf"
printf 'echo no init.conf\n' | QUEST_BOOT=$boot timeout 1.5 "$tmp/user_init" >"$tmp/out" 2>&1
if grep -q '^>no init.conf$' "$tmp/out" && ! grep -q 'init.conf:' "$tmp/out"; then
    pass "user_init: without init.conf"
else
    fail "user_init: without init.conf"
    cat "$tmp/out"
fi

rm "$boot/shell"
QUEST_BOOT=$boot timeout 2.5 "$tmp/user_init" </dev/null >"$tmp/out" 2>&1
n=$(grep -c 'user_init: shell exited with status 127; restarting' "$tmp/out")
if grep -q "^user_init: $boot/shell: No such file or directory$" "$tmp/out" &&
    [ "$n" -ge 1 ] && [ "$n" -le 4 ]; then
    pass "user_init: missing shell is retried once a second ($n in 2.5 s)"
else
    fail "user_init: missing shell"
    cat "$tmp/out"
fi

echo
if [ "$failures" = 0 ]; then
    echo "host-test: all checks passed"
else
    echo "host-test: $failures check(s) FAILED"
    exit 1
fi
