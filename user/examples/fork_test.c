/* fork_test: the seed's process-creation example (tutorial slide "Other Examples: fork_test").
 *
 * Verbatim except for two things the slide relies on from Quest's own libc:
 *   - `waitpid (pid)` takes one argument there; <quest_compat.h> maps the one-argument form to
 *     musl's `waitpid(pid, NULL, 0)`.
 *   - fork/getpid/_exit are declared in <unistd.h>, which Quest's <stdio.h> pulled in;
 *     <quest_compat.h> includes it.
 * The slide's `void main()` is kept (GCC warns, the exit status comes from `_exit (0)`).
 *
 * Expected output (order depends on the scheduler; the slide shows the child first):
 *   child: my id is 10
 *   parent: my id is 9
 */
#include <stdio.h>
#include <quest_compat.h>

void main() {
    int pid;
    if ((pid = fork ())) {
        printf ("parent: my id is %d\n", getpid());
        waitpid (pid);
        _exit (0);
    } else {
        printf ("child: my id is %d\n", getpid());
        _exit (0);
    }
}
