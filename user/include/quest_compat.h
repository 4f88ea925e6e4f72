/* quest_compat.h: source compatibility with the seed's (Quest's own) libc for programs built
 * against musl.
 *
 * - Quest's libc declared fork/getpid/_exit via <stdio.h>; musl needs <unistd.h>.
 * - Quest's waitpid took one argument, `waitpid(pid)`; musl's takes three. The macro below
 *   accepts both forms: `waitpid(pid)` becomes `waitpid(pid, NULL, 0)`, the three-argument
 *   form is passed through unchanged.
 */
#ifndef QUEST_COMPAT_H
#define QUEST_COMPAT_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define QUEST_WAITPID_1(pid) (waitpid)((pid), NULL, 0)
#define QUEST_WAITPID_3(pid, status, options) (waitpid)((pid), (status), (options))
#define QUEST_WAITPID_PICK(_1, _2, _3, name, ...) name
#define waitpid(...) \
    QUEST_WAITPID_PICK(__VA_ARGS__, QUEST_WAITPID_3, QUEST_WAITPID_2_invalid, QUEST_WAITPID_1, \
                       unused)(__VA_ARGS__)

#endif /* QUEST_COMPAT_H */
