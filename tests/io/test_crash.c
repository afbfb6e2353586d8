/* Saves are atomic: a child process that saves over an existing file is
 * killed (SIGKILL) at every step of the save in turn (the internal hook
 * td__io_crash_at: after creating the temporary file, after each write of 4
 * KiB, after the fsync, after the rename, after the folder's fsync), and at
 * random moments while it saves again and again; each time, the file on disk
 * loads whole, as the old version or the new one, never a mix. */
#include <signal.h>

#include "io.h"

enum { NARRAYS = 3, NELEM = 4096 }; /* 3 x 16 KiB of f32 / i32 */

/* A checkpoint of version v: every element of every array is v, and the
 * metadata says v. */
static td_status save_version(const char *path, int v) {
    td_array *a[NARRAYS];
    td_ckpt_entry e[NARRAYS];
    static const char *const names[NARRAYS] = {"w1", "w2", "b"};
    for (int i = 0; i < NARRAYS; i++) {
        a[i] = td_full(i == 2 ? TD_I32 : TD_F32, 1, (int64_t[]){NELEM}, v, td_cpu(0));
        e[i] = (td_ckpt_entry){names[i], a[i]};
    }
    char step[32];
    snprintf(step, sizeof step, "%d", v);
    td_ckpt_meta_entry m[] = {{"step", step}};
    td_status st = td_ckpt_save(path, NARRAYS, e, 1, m);
    for (int i = 0; i < NARRAYS; i++) td_release(a[i]);
    return st;
}

/* Loads the checkpoint and returns its version, asserting that it is whole
 * and consistent. */
static int loaded_version(const char *path, const char *what) {
    td_ckpt *ck = NULL;
    td_status st = td_ckpt_load(path, td_cpu(0), &ck);
    cr_assert_eq(st, TD_OK, "%s: the checkpoint does not load: %s", what, td_last_error());
    cr_assert_eq(td_ckpt_count(ck), NARRAYS, "%s", what);
    const char *step = td_ckpt_meta(ck, "step");
    cr_assert_not_null(step, "%s: no step", what);
    int v = atoi(step);
    for (size_t i = 0; i < NARRAYS; i++) {
        td_array *a = td_ckpt_get(ck, td_ckpt_name(ck, i));
        cr_assert_not_null(a);
        nd_ref r = nd_read(a);
        cr_assert_eq(r.n, NELEM);
        for (int64_t k = 0; k < r.n; k++)
            cr_assert_eq(r.f[k], (double)v, "%s: version %d holds %g at %s[%lld]", what, v, r.f[k],
                         td_ckpt_name(ck, i), (long long)k);
        nd_ref_free(&r);
        td_release(a);
    }
    td_ckpt_free(ck);
    return v;
}

/* The same for a .npy file of version v: NELEM int64 elements equal to v. */
static td_status npy_save_version(const char *path, int v) {
    td_array *a = td_full(TD_I64, 2, (int64_t[]){NELEM / 8, 8}, v, td_cpu(0));
    td_status st = td_npy_save(path, a);
    td_release(a);
    return st;
}

static int npy_loaded_version(const char *path, const char *what) {
    td_array *a = td_npy_load(path, td_cpu(0));
    cr_assert_not_null(a, "%s: the file does not load: %s", what, td_last_error());
    nd_ref r = nd_read(a);
    cr_assert_eq(r.n, NELEM);
    for (int64_t k = 0; k < r.n; k++) cr_assert_eq(r.i[k], r.i[0], "%s: a mix of versions", what);
    int v = (int)r.i[0];
    nd_ref_free(&r);
    td_release(a);
    return v;
}

typedef struct {
    td_status (*save)(const char *path, int v);
    int (*version)(const char *path, const char *what);
    const char *file;
} kind;

static const kind kinds[] = {{save_version, loaded_version, "c.safetensors"},
                             {npy_save_version, npy_loaded_version, "a.npy"}};

/* Kills the save at step 1, 2, ... until a save runs to its end. */
static void kill_at_every_step(const kind *kd) {
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s", dir, kd->file);
    int saw_old = 0, saw_new = 0, step;
    for (step = 1; step < 1000; step++) {
        cr_assert_eq(kd->save(path, 1), TD_OK, "%s", td_last_error());
        fflush(NULL);
        pid_t pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0) {
            td__io_crash_at(step, 4096);
            td_status st = kd->save(path, 2);
            _exit(st == TD_OK ? 0 : 1);
        }
        int status = 0;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        char what[64];
        snprintf(what, sizeof what, "%s killed at step %d", kd->file, step);
        int v = kd->version(path, what);
        cr_assert(v == 1 || v == 2, "%s: version %d", what, v);
        if (WIFEXITED(status)) {
            cr_assert_eq(WEXITSTATUS(status), 0, "the save in the child failed");
            cr_assert_eq(v, 2, "a finished save left the old version");
            break;
        }
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "%s: the child ended otherwise", what);
        /* Once the new version has appeared, it stays. */
        if (v == 1) cr_assert_not(saw_new, "%s: the old version came back", what);
        saw_old += v == 1;
        saw_new += v == 2;
    }
    cr_log_info("%s: killed at each of %d steps: old version %d times, new version %d times", kd->file, step - 1,
                saw_old, saw_new);
    cr_assert_geq(saw_old, 10, "few crash points before the rename");
    cr_assert_geq(saw_new, 1, "no crash point after the rename");
    io_rmdir(dir);
}

Test(crash, a_save_killed_at_any_step_leaves_the_old_file_or_the_new_one_whole, .timeout = 240) {
    nd_start(TD_ENGINE_THREADED, 2);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) kill_at_every_step(&kinds[i]);
    nd_finish();
}

Test(crash, saves_killed_at_random_moments_leave_a_whole_file, .timeout = 240) {
    nd_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {nd_seed("random kills", 17)};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        const kind *kd = &kinds[i];
        char dir[256], path[512];
        io_tmpdir(dir, sizeof dir);
        snprintf(path, sizeof path, "%s/%s", dir, kd->file);
        cr_assert_eq(kd->save(path, 0), TD_OK);
        int last = 0, versions = 0;
        for (int round = 0; round < 25; round++) {
            fflush(NULL);
            pid_t pid = fork();
            cr_assert_neq(pid, -1);
            if (pid == 0) {
                /* Saves versions last+1, last+2, ... until killed. */
                for (int v = last + 1;; v++)
                    if (kd->save(path, v) != TD_OK) _exit(1);
            }
            tt_sleep_ms(5 + tt_rng_below(&g, 40));
            kill(pid, SIGKILL);
            int status = 0;
            cr_assert_eq(waitpid(pid, &status, 0), pid);
            cr_assert(WIFSIGNALED(status), "the child stopped saving by itself");
            char what[64];
            snprintf(what, sizeof what, "%s round %d", kd->file, round);
            int v = kd->version(path, what);
            cr_assert_geq(v, last, "%s: an older version than before came back", what);
            versions += v - last;
            last = v;
        }
        cr_log_info("%s: 25 kills, %d versions saved in all", kd->file, versions);
        io_rmdir(dir);
    }
    nd_finish();
}
