/* tide-trace: summarises a trace tide wrote and draws its timeline.
 *
 * The work is in the library part (trace_summary.h); this file is options,
 * messages and exit statuses.  See usage() for what it prints.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace_summary.h"

enum { EXIT_BAD_INPUT = 1, EXIT_USAGE = 2 };

static void usage(FILE *f) {
    fputs("usage: tide-trace [options] trace.json\n"
          "\n"
          "Summarises a trace written by tide's profiler (td_profiler_start / td_profiler_stop, or\n"
          "TIDE_PROFILE=trace.json): span, busy time and utilisation per device and worker,\n"
          "parallelism achieved (op time / span, and the share of time with 0, 1, 2, ... ops\n"
          "running), queueing delays (push -> ready, ready -> start), the critical path (the\n"
          "longest chain of dependency flows, weighted by op durations) and time per op name.\n"
          "trace.json may be - for standard input.\n"
          "\n"
          "options:\n"
          "  --svg FILE        also draw the timeline into FILE (SVG: one row per worker, one\n"
          "                    box per op with a tooltip, flow arrows, the critical path outlined)\n"
          "  --top N           rows of the op-name table and ops of the critical path listed\n"
          "                    (default 10; 0: all)\n"
          "  --json            print the summary as one JSON object instead of text\n"
          "  --width PX        width of the SVG (default 1400)\n"
          "  --max-flows N     draw flow arrows only when the trace has at most N flows\n"
          "                    (default 2000; 0: never)\n"
          "  -h, --help        print this and exit\n"
          "\n"
          "exit status: 0 the summary of a sound trace; 1 bad input: the file cannot be read or\n"
          "is not a trace as tide writes it (nothing printed), or some of its flows name unknown\n"
          "ops or go backwards (printed, ignored in the summary) -- or an output could not be\n"
          "written; 2 wrong usage.  Messages go to standard error.\n",
          f);
}

/* A whole non-negative decimal number, or -1. */
static long parse_count(const char *s, long max) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > max) return -1;
    return v;
}

static int bad_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "tide-trace: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(tide-trace --help prints the options)\n");
    return EXIT_USAGE;
}

static int write_svg(const char *path, const td_trace *t, const td_trace_summary *s, const td_trace_svg_options *o) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "tide-trace: cannot write the SVG to %s: %s\n", path, strerror(errno));
        return 0;
    }
    int bad = td_trace_write_svg(f, t, s, o) != 0;
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        fprintf(stderr, "tide-trace: error writing the SVG to %s\n", path);
        remove(path);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    const char *svg_path = NULL;
    long top = 10;
    int json = 0;
    td_trace_svg_options svg_opt = td_trace_svg_options_default();
    enum { OPT_SVG = 256, OPT_TOP, OPT_JSON, OPT_WIDTH, OPT_MAX_FLOWS };
    static const struct option longopts[] = {
        {"svg", required_argument, NULL, OPT_SVG},     {"top", required_argument, NULL, OPT_TOP},
        {"json", no_argument, NULL, OPT_JSON},         {"width", required_argument, NULL, OPT_WIDTH},
        {"max-flows", required_argument, NULL, OPT_MAX_FLOWS}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0; /* our own messages */
    int c;
    long v;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_SVG: svg_path = optarg; break;
        case OPT_TOP:
            if ((top = parse_count(optarg, 1000000000L)) < 0)
                return bad_usage("--top wants a whole number >= 0 (0: all), not '%s'", optarg);
            break;
        case OPT_JSON: json = 1; break;
        case OPT_WIDTH:
            if ((v = parse_count(optarg, 100000)) < 400)
                return bad_usage("--width wants a number of pixels from 400 to 100000, not '%s'", optarg);
            svg_opt.width = (int)v;
            break;
        case OPT_MAX_FLOWS:
            if ((v = parse_count(optarg, 1000000000L)) < 0)
                return bad_usage("--max-flows wants a whole number >= 0, not '%s'", optarg);
            svg_opt.max_flows = (size_t)v;
            break;
        case 'h': usage(stdout); return 0;
        case ':': return bad_usage("%s needs a value", argv[optind - 1]);
        default: return bad_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind == argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (argc - optind > 1) return bad_usage("one trace at a time (also got '%s')", argv[optind + 1]);
    const char *path = argv[optind];

    char err[768];
    td_trace *t = NULL;
    td_trace_status st = td_trace_load(path, &t, err, sizeof err);
    if (st != TD_TRACE_OK) {
        fprintf(stderr, "tide-trace: %s\n", err);
        return EXIT_BAD_INPUT;
    }
    for (size_t i = 0; i < t->n_warnings && i < TD_TRACE_MAX_WARNINGS; i++)
        fprintf(stderr, "tide-trace: warning: %s: %s\n", path, t->warnings[i] ? t->warnings[i] : "(out of memory)");
    if (t->n_warnings > TD_TRACE_MAX_WARNINGS)
        fprintf(stderr, "tide-trace: warning: %s: ... and %zu more warnings\n", path,
                t->n_warnings - TD_TRACE_MAX_WARNINGS);

    td_trace_summary *s = NULL;
    int status = 0;
    if (td_trace_summarise(t, &s) != TD_TRACE_OK) {
        fprintf(stderr, "tide-trace: out of memory summarising %s\n", path);
        td_trace_free(t);
        return EXIT_BAD_INPUT;
    }
    int out_bad = json ? td_trace_print_json(stdout, path, t, s, (size_t)top)
                       : td_trace_print_text(stdout, path, t, s, (size_t)top);
    if (fflush(stdout) != 0 || out_bad) {
        fprintf(stderr, "tide-trace: error writing the summary\n");
        status = EXIT_BAD_INPUT;
    }
    if (svg_path) {
        if (!write_svg(svg_path, t, s, &svg_opt)) status = EXIT_BAD_INPUT;
        else if (!json) printf("\ntimeline written to %s\n", svg_path);
    }
    if (t->n_warnings) status = EXIT_BAD_INPUT;
    td_trace_summary_free(s);
    td_trace_free(t);
    return status;
}
