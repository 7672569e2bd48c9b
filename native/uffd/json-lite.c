/*
 * Just enough JSON for the two inputs the page server reads: Firecracker's
 * handshake (an array of flat objects with unsigned integer members) and a
 * working-set file (an array of unsigned integers, bare or under "offsets").
 * Unknown members of any shape are skipped, so a newer Firecracker that adds
 * fields keeps working. Nothing here allocates except the offsets array.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "uffd-common.h"

struct cursor {
	const char *start, *p, *end;
	char *err;
	size_t errlen;
	int depth;
};

static int fail(struct cursor *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, c->errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static void ws(struct cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
		c->p++;
}

static int expect(struct cursor *c, char ch)
{
	ws(c);
	if (c->p >= c->end || *c->p != ch)
		return fail(c, "expected '%c' at byte %td", ch, c->p - c->start);
	c->p++;
	return 0;
}

/* A string token; start and n point into the input, escapes left as they are
 * (member names we look for never contain any). */
static int string(struct cursor *c, const char **start, size_t *n)
{
	if (expect(c, '"'))
		return -1;
	*start = c->p;
	while (c->p < c->end && *c->p != '"') {
		if (*c->p == '\\')
			c->p++;
		c->p++;
	}
	if (c->p >= c->end)
		return fail(c, "unterminated string");
	*n = (size_t)(c->p - *start);
	c->p++;
	return 0;
}

static int u64(struct cursor *c, uint64_t *v)
{
	ws(c);
	if (c->p >= c->end || *c->p < '0' || *c->p > '9')
		return fail(c, "expected an unsigned integer");
	uint64_t x = 0;
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		uint64_t d = (uint64_t)(*c->p - '0');
		if (x > (UINT64_MAX - d) / 10)
			return fail(c, "integer overflow");
		x = x * 10 + d;
		c->p++;
	}
	if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E'))
		return fail(c, "expected an integer, got a fraction");
	*v = x;
	return 0;
}

static int skip_value(struct cursor *c)
{
	ws(c);
	if (c->p >= c->end)
		return fail(c, "unexpected end of input");
	if (++c->depth > 32)
		return fail(c, "nesting too deep");
	char ch = *c->p;
	int rc = 0;
	if (ch == '"') {
		const char *s;
		size_t n;
		rc = string(c, &s, &n);
	} else if (ch == '{' || ch == '[') {
		char close = ch == '{' ? '}' : ']';
		c->p++;
		ws(c);
		if (c->p < c->end && *c->p == close) {
			c->p++;
		} else {
			for (;;) {
				if (ch == '{') {
					const char *s;
					size_t n;
					if (string(c, &s, &n) || expect(c, ':'))
						return -1;
				}
				if (skip_value(c))
					return -1;
				ws(c);
				if (c->p < c->end && *c->p == ',') {
					c->p++;
					continue;
				}
				if (expect(c, close))
					return -1;
				break;
			}
		}
	} else {
		/* number, true, false, null */
		const char *start = c->p;
		while (c->p < c->end && strchr(",]} \n\r\t", *c->p) == NULL)
			c->p++;
		if (c->p == start)
			rc = fail(c, "unexpected character '%c'", ch);
	}
	c->depth--;
	return rc;
}

static int is_key(const char *s, size_t n, const char *want)
{
	return strlen(want) == n && memcmp(s, want, n) == 0;
}

static int region(struct cursor *c, struct uffd_region *r)
{
	uint64_t page_size = 0, page_size_kib = 0;
	int seen = 0;
	if (expect(c, '{'))
		return -1;
	ws(c);
	if (c->p < c->end && *c->p == '}')
		return fail(c, "empty region object");
	for (;;) {
		const char *k;
		size_t n;
		if (string(c, &k, &n) || expect(c, ':'))
			return -1;
		int rc;
		if (is_key(k, n, "base_host_virt_addr"))
			rc = u64(c, &r->base), seen |= 1;
		else if (is_key(k, n, "size"))
			rc = u64(c, &r->size), seen |= 2;
		else if (is_key(k, n, "offset"))
			rc = u64(c, &r->offset), seen |= 4;
		else if (is_key(k, n, "page_size"))
			rc = u64(c, &page_size);
		else if (is_key(k, n, "page_size_kib"))
			rc = u64(c, &page_size_kib);
		else
			rc = skip_value(c);
		if (rc)
			return -1;
		ws(c);
		if (c->p < c->end && *c->p == ',') {
			c->p++;
			continue;
		}
		if (expect(c, '}'))
			return -1;
		break;
	}
	if (seen != 7)
		return fail(c, "region lacks base_host_virt_addr, size or offset");
	/* Firecracker sends both; `page_size_kib` is, despite its name, in bytes
	 * (its changelog deprecates it for that reason). A value below 4096
	 * cannot be a byte count, so an implementation that really sent KiB is
	 * scaled rather than rejected. No field at all means 4 KiB pages. */
	if (page_size == 0)
		page_size = page_size_kib;
	if (page_size != 0 && page_size < 4096)
		page_size *= 1024;
	r->page_size = page_size ? page_size : 4096;
	return 0;
}

int json_parse_regions(const char *s, size_t len, struct uffd_region *out, int max, char *err, size_t errlen)
{
	struct cursor c = {s, s, s + len, err, errlen, 0};
	int n = 0;
	if (expect(&c, '['))
		return -1;
	ws(&c);
	if (c.p < c.end && *c.p == ']')
		return fail(&c, "no regions in the handshake");
	for (;;) {
		if (n == max)
			return fail(&c, "more than %d regions", max);
		if (region(&c, &out[n]))
			return -1;
		n++;
		ws(&c);
		if (c.p < c.end && *c.p == ',') {
			c.p++;
			continue;
		}
		if (expect(&c, ']'))
			return -1;
		return n;
	}
}

static int offsets_array(struct cursor *c, uint64_t **out, size_t *count)
{
	size_t cap = 1024, n = 0;
	uint64_t *v = malloc(cap * sizeof *v);
	if (!v)
		return fail(c, "out of memory");
	if (expect(c, '['))
		goto bad;
	ws(c);
	if (c->p < c->end && *c->p == ']') {
		c->p++;
		goto done;
	}
	for (;;) {
		if (n == cap) {
			uint64_t *bigger = realloc(v, (cap *= 2) * sizeof *v);
			if (!bigger) {
				fail(c, "out of memory");
				goto bad;
			}
			v = bigger;
		}
		if (u64(c, &v[n]))
			goto bad;
		n++;
		ws(c);
		if (c->p < c->end && *c->p == ',') {
			c->p++;
			continue;
		}
		if (expect(c, ']'))
			goto bad;
		break;
	}
done:
	*out = v;
	*count = n;
	return 0;
bad:
	free(v);
	return -1;
}

int json_parse_offsets(const char *s, size_t len, uint64_t **out, size_t *count, char *err, size_t errlen)
{
	struct cursor c = {s, s, s + len, err, errlen, 0};
	ws(&c);
	if (c.p < c.end && *c.p == '[')
		return offsets_array(&c, out, count);
	if (expect(&c, '{'))
		return -1;
	for (;;) {
		const char *k;
		size_t n;
		if (string(&c, &k, &n) || expect(&c, ':'))
			return -1;
		if (is_key(k, n, "offsets"))
			return offsets_array(&c, out, count);
		if (skip_value(&c))
			return -1;
		ws(&c);
		if (c.p < c.end && *c.p == ',') {
			c.p++;
			continue;
		}
		return fail(&c, "no \"offsets\" array in the working-set file");
	}
}
