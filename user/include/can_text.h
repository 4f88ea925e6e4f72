/* can-utils' text forms of a frame, shared by candump, cansend, canplayer and can-gw:
 *   compact  123#DEADBEEF   12345678#01.02   123#R   123#R3
 *   default  "  can0  123   [4]  DE AD BE EF"
 *   log      "(1700000000.123456) can0 123#DEADBEEF"                                   */
#ifndef CAN_TEXT_H
#define CAN_TEXT_H
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <quest_can.h>

static inline int can_hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Parses "ID#DATA" (can-utils' cansend syntax); 0 on success, -1 on a bad frame. */
static inline int can_parse_frame(const char *s, struct can_frame *f)
{
    memset(f, 0, sizeof *f);
    const char *hash = strchr(s, '#');
    if (!hash) return -1;
    size_t idlen = (size_t)(hash - s);
    if (idlen != 3 && idlen != 8) return -1;
    uint32_t id = 0;
    for (size_t i = 0; i < idlen; i++) {
        int v = can_hexval(s[i]);
        if (v < 0) return -1;
        id = id << 4 | (uint32_t)v;
    }
    if (idlen == 3) {
        if (id > CAN_SFF_MASK) return -1;
        f->can_id = id;
    } else {
        if (id > CAN_EFF_MASK) return -1;
        f->can_id = id | CAN_EFF_FLAG;
    }
    const char *d = hash + 1;
    if (*d == 'R' || *d == 'r') {
        f->can_id |= CAN_RTR_FLAG;
        if (d[1] >= '0' && d[1] <= '8' && d[2] == 0) f->len = (uint8_t)(d[1] - '0');
        else if (d[1] != 0) return -1;
        return 0;
    }
    int n = 0;
    while (*d) {
        if (*d == '.') { d++; continue; }
        int hi = can_hexval(d[0]), lo = d[1] ? can_hexval(d[1]) : -1;
        if (hi < 0 || lo < 0 || n == 8) return -1;
        f->data[n++] = (uint8_t)(hi << 4 | lo);
        d += 2;
    }
    f->len = (uint8_t)n;
    return 0;
}

/* "ID#DATA" into buf (at least 32 bytes). */
static inline void can_format_compact(const struct can_frame *f, char *buf)
{
    int p;
    if (f->can_id & CAN_EFF_FLAG) p = sprintf(buf, "%08X#", f->can_id & CAN_EFF_MASK);
    else p = sprintf(buf, "%03X#", f->can_id & CAN_SFF_MASK);
    if (f->can_id & CAN_RTR_FLAG) {
        sprintf(buf + p, "R%s", "");
        if (f->len) sprintf(buf + p + 1, "%u", f->len);
        return;
    }
    for (int i = 0; i < f->len && i < 8; i++) p += sprintf(buf + p, "%02X", f->data[i]);
}

/* candump's default line (without the newline) into buf (at least 64 bytes). */
static inline void can_format_default(const char *ifname, const struct can_frame *f, char *buf)
{
    int p;
    if (f->can_id & CAN_EFF_FLAG) p = sprintf(buf, "  %s  %08X   [%u] ", ifname, f->can_id & CAN_EFF_MASK, f->len);
    else p = sprintf(buf, "  %s  %03X   [%u] ", ifname, f->can_id & CAN_SFF_MASK, f->len);
    if (f->can_id & CAN_RTR_FLAG) {
        sprintf(buf + p, " remote request");
        return;
    }
    for (int i = 0; i < f->len && i < 8; i++) p += sprintf(buf + p, " %02X", f->data[i]);
}

#endif
