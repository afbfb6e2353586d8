/* The timeline as SVG: one row per track, one <rect> per op, a time axis,
 * flow arrows, the critical path outlined, and a legend.
 *
 * The picture is plain SVG 1.1 that browsers open as is.  Every <rect> is an
 * op (swatches and frames use other elements), so a script can count them.
 * All text from the trace goes through xml_text, which escapes XML's special
 * characters and replaces what XML cannot hold (control characters, bytes
 * that are not UTF-8, U+FFFE and U+FFFF) with '?'.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trace_summary.h"

enum {
    LABEL_W = 210, /* the column of row labels */
    MARGIN = 20,
    TOP = 64,      /* title and axis above the first row */
    ROW_H = 22,
    BAR_H = 16,
    DEVICE_GAP = 8,
    LEGEND_ROW = 18,
    LEGEND_COL = 340,
};

td_trace_svg_options td_trace_svg_options_default(void) {
    td_trace_svg_options o = {.width = 1400, .max_flows = 2000, .legend = 16};
    return o;
}

/* Length of the valid UTF-8 sequence at s that XML allows, or 0. */
static size_t utf8_ok(const unsigned char *s) {
    unsigned c = s[0];
    if (c < 0x80) return c >= 0x20 || c == '\t' || c == '\n' || c == '\r' ? 1 : 0;
    unsigned lo = 0x80, hi = 0xbf;
    size_t n;
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f; /* no UTF-16 surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else
        return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    if (c == 0xef && s[1] == 0xbf && (s[2] == 0xbe || s[2] == 0xbf)) return 0; /* U+FFFE, U+FFFF */
    return n;
}

/* Writes at most max_chars characters of s (0: all), escaped for XML text
 * and attribute values; "..." marks a cut. */
static void xml_text(FILE *f, const char *str, size_t max_chars) {
    const unsigned char *s = (const unsigned char *)str;
    for (size_t chars = 0; *s; chars++) {
        if (max_chars && chars == max_chars) {
            fputs("...", f);
            return;
        }
        size_t n = utf8_ok(s);
        if (n == 0) {
            fputc('?', f);
            s++;
            continue;
        }
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fwrite(s, 1, n, f);
        }
        s += n;
    }
}

/* A colour from the name: FNV-1a picks a hue; saturation and lightness are
 * fixed so every op reads on white and black text stays legible. */
static void name_colour(const char *name, char out[8]) {
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 16777619u;
    double hue = (double)(h % 360u) / 60.0, sat = 0.55 + (double)((h >> 9) % 20u) / 100.0,
           light = 0.55 + (double)((h >> 17) % 15u) / 100.0;
    double c = (1 - fabs(2 * light - 1)) * sat, x = c * (1 - fabs(fmod(hue, 2) - 1)), m = light - c / 2;
    double rgb[3] = {0, 0, 0};
    int sector = (int)hue;
    const int idx[6][3] = {{0, 1, 2}, {1, 0, 2}, {1, 2, 0}, {2, 1, 0}, {2, 0, 1}, {0, 2, 1}};
    /* Per sixth of the hue circle: which of R, G, B gets c (the largest), which x. */
    rgb[idx[sector][0]] = c;
    rgb[idx[sector][1]] = x;
    snprintf(out, 8, "#%02x%02x%02x", (unsigned)lround((rgb[0] + m) * 255), (unsigned)lround((rgb[1] + m) * 255),
             (unsigned)lround((rgb[2] + m) * 255));
}

/* A tick step of 1, 2 or 5 times a power of ten giving at most about ten ticks. */
static double tick_step(double span) {
    double raw = span / 10, mag = pow(10, floor(log10(raw)));
    return raw <= mag ? mag : raw <= 2 * mag ? 2 * mag : raw <= 5 * mag ? 5 * mag : 10 * mag;
}

typedef struct {
    FILE *f;
    const td_trace *t;
    const td_trace_summary *s;
    double x0, scale; /* pixels: x0 + (ts - t0) * scale */
    double *row_y;    /* top of each track's row */
} svg;

static double xs(const svg *g, double ts) { return g->x0 + (ts - g->s->t0) * g->scale; }

/* A tick label in the unit of the step, without trailing zeros: "0", "250 us", "1.5 ms". */
static void tick_label(char *buf, size_t n, double v, double step) {
    static const struct {
        double scale;
        const char *unit;
    } units[] = {{1e6, "s"}, {1e3, "ms"}, {1, "us"}, {1e-3, "ns"}};
    size_t u = 0;
    while (u + 1 < sizeof units / sizeof *units && step < units[u].scale) u++;
    if (v == 0) snprintf(buf, n, "0");
    else snprintf(buf, n, "%.6g %s", v / units[u].scale, units[u].unit);
}

static void axis(const svg *g, double plot_w, double bottom) {
    FILE *f = g->f;
    char b[32];
    fprintf(f, "<g class=\"axis\">\n<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\"/>\n", g->x0, TOP - 8,
            g->x0 + plot_w, TOP - 8);
    if (g->s->span > 0) {
        double step = tick_step(g->s->span);
        for (int k = 0; k * step <= g->s->span * (1 + 1e-9); k++) {
            double v = k * step, x = xs(g, g->s->t0 + v);
            fprintf(f, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%.2f\" class=\"grid\"/>\n", x, TOP - 8, x, bottom);
            tick_label(b, sizeof b, v, step);
            fprintf(f, "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x, TOP - 14, b);
        }
    }
    fputs("</g>\n", f);
}

static void rows(const svg *g, double right) {
    FILE *f = g->f;
    const td_trace *t = g->t;
    fputs("<g class=\"rows\">\n", f);
    for (size_t i = 0; i < t->n_tracks; i++) {
        const td_trace_device *d = &t->devices[t->tracks[i].device];
        const char *cut = strstr(d->name, " (");
        size_t dl = cut ? (size_t)(cut - d->name) : strlen(d->name);
        double y = g->row_y[i];
        fprintf(f, "<text x=\"%d\" y=\"%.2f\"><title>", MARGIN, y + BAR_H - 4);
        xml_text(f, d->name, 0);
        fputs(" / ", f);
        xml_text(f, t->tracks[i].name, 0);
        fputs("</title>", f);
        char *dev = strndup(d->name, dl);
        xml_text(f, dev ? dev : "?", 14);
        free(dev);
        fputs(" \xc2\xb7 ", f); /* a middle dot */
        xml_text(f, t->tracks[i].name, 16);
        fprintf(f, "</text>\n<line x1=\"%d\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" class=\"sep\"/>\n", MARGIN,
                y + ROW_H - 3, right, y + ROW_H - 3);
    }
    fputs("</g>\n", f);
}

static void ops(const svg *g, const unsigned char *on_path) {
    FILE *f = g->f;
    const td_trace *t = g->t;
    char colour[8], b[32], c[32];
    fputs("<g class=\"ops\">\n", f);
    for (size_t i = 0; i < t->n_ops; i++) {
        const td_trace_op *op = &t->ops[i];
        double w = op->dur * g->scale;
        name_colour(op->name, colour);
        fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%d\" fill=\"%s\"%s><title>", xs(g, op->ts),
                g->row_y[op->track], w < 0.3 ? 0.3 : w, BAR_H, colour, on_path[i] ? " class=\"crit\"" : "");
        xml_text(f, op->name, 0);
        fprintf(f, " (push %llu)\n%s at +%s%s%s</title></rect>\n", (unsigned long long)op->push,
                td_trace_fmt_time(b, sizeof b, op->dur), td_trace_fmt_time(c, sizeof c, op->ts - g->s->t0),
                op->outcome == TD_TRACE_FAILED ? ", failed" : op->outcome == TD_TRACE_SKIPPED ? ", skipped" : "",
                on_path[i] ? ", on the critical path" : "");
    }
    fputs("</g>\n", f);
}

/* An arrow from the end of each op to the start of the op that waited for it. */
static void flows(const svg *g) {
    FILE *f = g->f;
    fputs("<g class=\"flows\">\n", f);
    for (size_t k = 0; k < g->t->n_flows; k++) {
        const td_trace_op *a = &g->t->ops[g->t->flows[k].from], *b = &g->t->ops[g->t->flows[k].to];
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n", xs(g, a->ts + a->dur),
                g->row_y[a->track] + BAR_H / 2.0, xs(g, b->ts), g->row_y[b->track] + BAR_H / 2.0);
    }
    fputs("</g>\n", f);
}

static void legend(const svg *g, double y, size_t n_names, int cols, int drew_flows) {
    FILE *f = g->f;
    char colour[8], b[32];
    fprintf(f, "<g class=\"legend\">\n<text x=\"%d\" y=\"%.2f\">op names by total time%s; outlined: the critical "
               "path (%zu ops)%s</text>\n",
            MARGIN, y, n_names < g->s->n_names ? " (the largest)" : "", g->s->n_path,
            g->t->n_flows == 0 ? ""
            : drew_flows      ? "; arrows: dependencies the engine resolved"
                              : "; flow arrows left out (too many)");
    for (size_t i = 0; i < n_names; i++) {
        const td_trace_name_row *r = &g->s->names[i];
        double x = MARGIN + (double)(i % (size_t)cols) * LEGEND_COL, yy = y + LEGEND_ROW * (double)(1 + i / (size_t)cols);
        name_colour(r->name, colour);
        fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"6\" fill=\"%s\"/><text x=\"%.2f\" y=\"%.2f\">", x + 6, yy - 4,
                colour, x + 16, yy);
        xml_text(f, r->name, 32);
        fprintf(f, " \xe2\x80\x94 %zu, %s</text>\n", r->count, td_trace_fmt_time(b, sizeof b, r->total));
    }
    fputs("</g>\n", f);
}

int td_trace_write_svg(FILE *f, const td_trace *t, const td_trace_summary *s, const td_trace_svg_options *opt) {
    td_trace_svg_options o = opt ? *opt : td_trace_svg_options_default();
    if (o.width < 400) o.width = 400;
    double plot_w = o.width - LABEL_W - MARGIN;
    svg g = {f, t, s, LABEL_W, s->span > 0 ? plot_w / s->span : 0, NULL};
    g.row_y = malloc((t->n_tracks ? t->n_tracks : 1) * sizeof *g.row_y);
    unsigned char *on_path = calloc(t->n_ops ? t->n_ops : 1, 1);
    if (!g.row_y || !on_path) {
        free(g.row_y);
        free(on_path);
        return -1;
    }
    for (size_t k = 0; k < s->n_path; k++) on_path[s->path[k]] = 1;
    double y = TOP;
    for (size_t i = 0; i < t->n_tracks; i++) {
        if (i > 0 && t->tracks[i].device != t->tracks[i - 1].device) y += DEVICE_GAP;
        g.row_y[i] = y;
        y += ROW_H;
    }
    double rows_end = y;
    int cols = (o.width - 2 * MARGIN) / LEGEND_COL;
    if (cols < 1) cols = 1;
    size_t n_names = o.legend < s->n_names ? o.legend : s->n_names;
    int drew_flows = t->n_flows <= o.max_flows;
    double legend_y = rows_end + 24;
    double height = legend_y + LEGEND_ROW * (double)(1 + (n_names + (size_t)cols - 1) / (size_t)cols) + MARGIN;
    char a[32], b[32];

    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%.0f\" "
               "viewBox=\"0 0 %d %.0f\" font-family=\"sans-serif\" font-size=\"11\">\n",
            o.width, height, o.width, height);
    fputs("<style>\n"
          ".axis line{stroke:#444}.axis line.grid{stroke:#ddd}.sep{stroke:#eee}\n"
          ".ops rect{stroke:#fff;stroke-width:0.3}.ops rect.crit{stroke:#000;stroke-width:1.4}\n"
          ".flows line{stroke:#333;stroke-width:0.7;opacity:0.55;marker-end:url(#arrow)}\n"
          "text{fill:#222}\n"
          "</style>\n"
          "<defs><marker id=\"arrow\" viewBox=\"0 0 8 8\" refX=\"8\" refY=\"4\" markerWidth=\"6\" "
          "markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L8,4 L0,8 z\" fill=\"#333\"/></marker></defs>\n",
          f);
    fprintf(f, "<text x=\"%d\" y=\"18\" font-size=\"13\">tide trace: %zu ops, span %s, parallelism %.2f, critical "
               "path %s (%.0f%% of the span)</text>\n",
            MARGIN, s->n_ops, td_trace_fmt_time(a, sizeof a, s->span), s->parallelism,
            td_trace_fmt_time(b, sizeof b, s->path_time), s->span > 0 ? 100 * s->path_time / s->span : 0.0);
    axis(&g, plot_w, rows_end);
    rows(&g, o.width - MARGIN);
    ops(&g, on_path);
    if (drew_flows && t->n_flows) flows(&g);
    legend(&g, legend_y, n_names, cols, drew_flows);
    fputs("</svg>\n", f);
    free(g.row_y);
    free(on_path);
    return ferror(f) ? -1 : 0;
}
