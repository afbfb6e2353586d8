/* The fuzz seeds and every input a fuzz run ever crashed on (fuzz/corpus/,
 * fuzz/regressions/) through both loaders, from the file and from memory, in
 * every job of scripts/check.sh: so the ASan/UBSan job runs the loaders over
 * the corpus, and a fixed crash stays fixed.  Each load returns a result or
 * TD_EFORMAT naming the file; the seeds called bad_* must fail and the other
 * seeds must load. */
#include "io.h"

#ifndef TIDE_SOURCE_ROOT
#error "TIDE_SOURCE_ROOT must name the source tree"
#endif

/* Checks the outcome of one load; returns 1 if it loaded. */
static int check_outcome(int loaded, const char *name, const char *what) {
    if (loaded) return 1;
    cr_assert_eq(td_last_status(), TD_EFORMAT, "%s: failed with %s (%s)", what, td_status_name(td_last_status()),
                 td_last_error());
    cr_assert(tt_has(td_last_error(), name), "%s: the message \"%s\" does not name the file", what, td_last_error());
    return 0;
}

static int load_npy(const char *path, const unsigned char *data, size_t n) {
    td_clear_error();
    td_array *a = td_npy_load(path, td_cpu(0));
    int ok = check_outcome(a != NULL, path, path);
    if (a) cr_assert_leq((size_t)td_numel(a) * td_dtype_size(td_dtype(a)), n, "%s: larger than the file", path);
    td_release(a);
    td_clear_error();
    a = td__npy_load_mem(data, n, "corpus-input", td_cpu(0));
    cr_assert_eq(check_outcome(a != NULL, "corpus-input", path), ok, "%s: the file and memory loaders disagree", path);
    td_release(a);
    return ok;
}

static int load_ckpt(const char *path, const unsigned char *data, size_t n) {
    td_ckpt *ck = NULL;
    td_clear_error();
    int ok = check_outcome(td_ckpt_load(path, td_cpu(0), &ck) == TD_OK, path, path);
    size_t total = 0;
    for (size_t i = 0; i < td_ckpt_count(ck); i++) {
        td_array *a = td_ckpt_get(ck, td_ckpt_name(ck, i));
        cr_assert_not_null(a, "%s: %s", path, td_last_error());
        total += (size_t)td_numel(a) * td_dtype_size(td_dtype(a));
        td_release(a);
    }
    cr_assert_leq(total, n, "%s: larger than the file", path);
    td_ckpt_free(ck);
    td_clear_error();
    int ok2 = check_outcome(td__ckpt_load_mem(data, n, "corpus-input", td_cpu(0), &ck) == TD_OK, "corpus-input", path);
    cr_assert_eq(ok2, ok, "%s: the file and memory loaders disagree", path);
    td_ckpt_free(ck);
    return ok;
}

/* Every file of folder through both loaders; returns how many there were. */
static int run_folder(const char *folder, int is_npy, int seeds) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/fuzz/%s", TIDE_SOURCE_ROOT, folder);
    DIR *d = opendir(dir);
    if (!d) {
        cr_assert(!seeds, "no seed corpus at %s", dir);
        return 0;
    }
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t n;
        unsigned char *data = io_read_file(path, &n);
        cr_assert_not_null(data, "cannot read %s", path);
        int as_npy = load_npy(path, data, n), as_ckpt = load_ckpt(path, data, n);
        if (seeds) {
            int bad = strncmp(e->d_name, "bad_", 4) == 0;
            int ok = is_npy ? as_npy : as_ckpt;
            cr_assert_eq(ok, !bad, "%s: %s (%s)", path, bad ? "a bad seed loaded" : "a good seed failed",
                         td_last_error());
            cr_assert_not(is_npy ? as_ckpt : as_npy, "%s loads as the other format", path);
        }
        free(data);
        count++;
    }
    closedir(d);
    cr_log_info("%s: %d files", dir, count);
    return count;
}

Test(corpus, seeds_and_regressions_load_or_fail_cleanly, .timeout = 120) {
    nd_start(TD_ENGINE_THREADED, 2);
    cr_assert_geq(run_folder("corpus/npy", 1, 1), 10);
    cr_assert_geq(run_folder("corpus/ckpt", 0, 1), 5);
    run_folder("regressions/npy", 1, 0);
    run_folder("regressions/ckpt", 0, 0);
    nd_finish();
}
