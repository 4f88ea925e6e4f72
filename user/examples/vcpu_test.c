/* vcpu_test: the seed's VCPU API example (tutorial slides "Other Examples: vcpu_test"),
 * verbatim: the two slides are one program, the first slide's closing brace of main being
 * where the second slide continues.
 *
 * Asks for a Main VCPU with a budget of 20 us every 100 us, binds itself to it and prints its
 * VCPU parameters before and after. Expected output on Quest:
 *   Before vcpu bind task: C = 5000, T = 50000
 *   After vcpu bind task: C = 20, T = 100
 * On Linux the Quest syscalls fail with ENOSYS and it prints "Failed to create vcpu".
 */
#include <stdio.h>
#include <vcpu.h>

int main(int argc, char* argv[]) {
    struct sched_param s_params = {.type = MAIN_VCPU, .C = 20, .T = 100};
    struct sched_param s_params2;
    memset (&s_params2, 0, sizeof(s_params2));
    int new_vcpu = vcpu_create (&s_params);
    if (new_vcpu < 0) {
        printf ("Failed to create vcpu\n");
        exit (1);
    }
    vcpu_getparams (&s_params2);
    printf ("Before vcpu bind task: C = %d, T = %d\n", s_params2.C, s_params2.T);
    vcpu_bind_task (new_vcpu);
    usleep (1000000);
    vcpu_getparams (&s_params2);
    printf ("After vcpu bind task: C = %d, T = %d\n", s_params2.C, s_params2.T);
}
