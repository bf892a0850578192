/*
 * The formats of "objmapper stats": the daemon's "name{labels} value"
 * lines as an aligned table or as one JSON object. Runs in the user's
 * process.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_int.h"

/* One line of STATS, pointing into its text. */
typedef struct {
	const char *name, *labels, *value; /* labels: between the braces, or NULL */
	int name_len, labels_len, value_len;
} stat_line_t;

/*
 * Splits a line "name value" or "name{k="v",...} value". A line of
 * another shape (a newer daemon's) is 0 and left out of the JSON; the
 * table shows it as it came.
 */
static int
split(const char *p, size_t len, stat_line_t *l)
{
	const char *end = p + len, *sp, *brace;

	memset(l, 0, sizeof(*l));
	if ((sp = memchr(p, ' ', len)) == NULL || sp == p || sp + 1 == end)
		return 0;
	l->value = sp + 1;
	l->value_len = (int)(end - l->value);
	brace = memchr(p, '{', (size_t)(sp - p));
	l->name = p;
	l->name_len = (int)((brace ? brace : sp) - p);
	if (brace != NULL) {
		/* A label value may hold a space or a brace: the labels end at
		 * the last '}' before the value. */
		const char *close = NULL;

		for (const char *q = brace; q < end; q++) {
			if (*q == '}')
				close = q;
		}
		if (close == NULL || close + 1 >= end || close[1] != ' ')
			return 0;
		l->labels = brace + 1;
		l->labels_len = (int)(close - l->labels);
		l->value = close + 2;
		l->value_len = (int)(end - l->value);
	}
	return l->name_len > 0 && l->value_len > 0;
}

/* Calls fn for each non-empty line of text. */
static void
each_line(const char *text, void (*fn)(void *, const char *, size_t), void *arg)
{
	const char *p = text;

	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (len > 0)
			fn(arg, p, len);
		p += len + (nl != NULL);
	}
}

/* ---- table --------------------------------------------------------------- */

typedef struct {
	FILE *m;
	int name_w, value_w;
} table_t;

/* The series (name and labels) is the part before the last space: a
 * label value may hold spaces, a number does not. */
static const char *
last_space(const char *p, size_t len)
{
	for (size_t i = len; i > 0; i--) {
		if (p[i - 1] == ' ')
			return p + i - 1;
	}
	return NULL;
}

static void
measure(void *arg, const char *p, size_t len)
{
	table_t *t = arg;
	const char *sp = last_space(p, len);
	int nlen = (int)(sp ? (size_t)(sp - p) : len);
	int vlen = sp ? (int)(len - (size_t)nlen - 1) : 0;

	if (nlen > t->name_w)
		t->name_w = nlen;
	if (vlen > t->value_w)
		t->value_w = vlen;
}

static void
row(void *arg, const char *p, size_t len)
{
	table_t *t = arg;
	const char *sp = last_space(p, len);
	int nlen = (int)(sp ? (size_t)(sp - p) : len);

	if (sp == NULL)
		fprintf(t->m, "%.*s\n", nlen, p);
	else
		fprintf(t->m, "%-*.*s  %*.*s\n", t->name_w, nlen, p, t->value_w,
		    (int)(len - (size_t)nlen - 1), sp + 1);
}

void
om_cli_stats_table(FILE *m, const char *text)
{
	table_t t = { m, 0, 0 };

	each_line(text, measure, &t);
	each_line(text, row, &t);
}

/* ---- JSON ---------------------------------------------------------------- */

typedef struct {
	stat_line_t *v;
	size_t n, cap;
	int failed;
} lines_t;

static void
collect(void *arg, const char *p, size_t len)
{
	lines_t *ls = arg;
	stat_line_t l;

	if (ls->failed || !split(p, len, &l))
		return;
	if (ls->n == ls->cap) {
		size_t cap = ls->cap ? ls->cap * 2 : 128;
		stat_line_t *v = realloc(ls->v, cap * sizeof(*v));

		if (v == NULL) {
			ls->failed = 1;
			return;
		}
		ls->v = v;
		ls->cap = cap;
	}
	ls->v[ls->n++] = l;
}

/* A JSON string of n bytes of s; with unescape, s is a Prometheus label
 * value (\\, \" and \n escaped). */
static void
json_string(FILE *m, const char *s, int n, int unescape)
{
	fputc('"', m);
	for (int i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (unescape && c == '\\' && i + 1 < n) {
			c = (unsigned char)s[++i];
			if (c == 'n')
				c = '\n';
		}
		if (c == '"' || c == '\\')
			fprintf(m, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", m);
		else if (c < 0x20 || c == 0x7f)
			fprintf(m, "\\u%04x", c);
		else
			fputc(c, m);
	}
	fputc('"', m);
}

/* STATS values are unsigned decimal; anything else goes out as a string
 * rather than as broken JSON. */
static void
json_value(FILE *m, const stat_line_t *l)
{
	int digits = l->value_len > 0 && l->value_len < 21 && (l->value[0] != '0' || l->value_len == 1);

	for (int i = 0; i < l->value_len && digits; i++)
		digits = l->value[i] >= '0' && l->value[i] <= '9';
	if (digits)
		fprintf(m, "%.*s", l->value_len, l->value);
	else
		json_string(m, l->value, l->value_len, 0);
}

/* {"k": "v", ..., "value": N} from k="v",... */
static void
json_series(FILE *m, const stat_line_t *l)
{
	const char *p = l->labels, *end = l->labels ? l->labels + l->labels_len : NULL;

	fputc('{', m);
	while (p != NULL && p < end) {
		const char *eq = memchr(p, '=', (size_t)(end - p)), *v, *q;

		if (eq == NULL || eq + 1 >= end || eq[1] != '"')
			break;
		v = eq + 2;
		for (q = v; q < end && *q != '"'; q++) {
			if (*q == '\\' && q + 1 < end)
				q++;
		}
		if (q >= end)
			break;
		json_string(m, p, (int)(eq - p), 0);
		fputs(": ", m);
		json_string(m, v, (int)(q - v), 1);
		fputs(", ", m);
		p = q + 1;
		if (p < end && *p == ',')
			p++;
	}
	fputs("\"value\": ", m);
	json_value(m, l);
	fputc('}', m);
}

static int
same_name(const stat_line_t *a, const stat_line_t *b)
{
	return a->name_len == b->name_len && memcmp(a->name, b->name, (size_t)a->name_len) == 0;
}

int
om_cli_stats_json(FILE *m, const char *text)
{
	lines_t ls = { NULL, 0, 0, 0 };
	int first = 1;

	each_line(text, collect, &ls);
	if (ls.failed) {
		free(ls.v);
		return -1;
	}
	fputs("{", m);
	/* One member per name, where it first appears: a plain metric's
	 * value, or the array of a labeled family's series. */
	for (size_t i = 0; i < ls.n; i++) {
		const stat_line_t *l = &ls.v[i];
		int labeled = 0, seen = 0, n = 0;

		for (size_t j = 0; j < i && !seen; j++)
			seen = same_name(&ls.v[j], l);
		if (seen)
			continue;
		for (size_t j = i; j < ls.n; j++) {
			if (same_name(&ls.v[j], l)) {
				labeled |= ls.v[j].labels != NULL;
				n++;
			}
		}
		fputs(first ? "\n  " : ",\n  ", m);
		first = 0;
		json_string(m, l->name, l->name_len, 0);
		fputs(": ", m);
		if (!labeled && n == 1) {
			json_value(m, l);
			continue;
		}
		fputs("[", m);
		for (size_t j = i, k = 0; j < ls.n; j++) {
			if (!same_name(&ls.v[j], l))
				continue;
			fputs(k++ ? ",\n    " : "\n    ", m);
			json_series(m, &ls.v[j]);
		}
		fputs("\n  ]", m);
	}
	fputs(first ? "}\n" : "\n}\n", m);
	free(ls.v);
	return 0;
}
