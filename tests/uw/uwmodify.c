/* uwmodify: change one mailbox file the way UW-IMAP did, with c-client itself (its read-write
 * drivers: mbx, mmdf, unix, ...), for the tests of the live view.
 * Build: cc -O2 -Wall -Wno-pointer-sign -I/usr/include/c-client -o uwmodify uwmodify.c -lc-client
 * Usage: uwmodify DIR/NAME open                      (open read-write and close: UIDs settle)
 *        uwmodify DIR/NAME setflag UIDS FLAGS        (e.g. 2 "\\Flagged \\Seen")
 *        uwmodify DIR/NAME clearflag UIDS FLAGS
 *        uwmodify DIR/NAME expunge UIDS              (\Deleted, then expunge)
 *        uwmodify DIR/NAME append FILE [FLAGS]       (append FILE's bytes as a message)
 * NAME is opened relative to DIR (as uwdump does). Exit status 0 on success. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "c-client.h"
void mm_searched(MAILSTREAM *s, unsigned long n) {}
void mm_exists(MAILSTREAM *s, unsigned long n) {}
void mm_expunged(MAILSTREAM *s, unsigned long n) {}
void mm_flags(MAILSTREAM *s, unsigned long n) {}
void mm_notify(MAILSTREAM *s, char *str, long e) { fprintf(stderr, "notify: %s\n", str); }
void mm_list(MAILSTREAM *s, int d, char *n, long a) {}
void mm_lsub(MAILSTREAM *s, int d, char *n, long a) {}
void mm_status(MAILSTREAM *s, char *m, MAILSTATUS *st) {}
void mm_log(char *str, long e) { fprintf(stderr, "log: %s\n", str); }
void mm_dlog(char *str) {}
void mm_login(NETMBX *mb, char *u, char *p, long t) {}
void mm_critical(MAILSTREAM *s) {}
void mm_nocritical(MAILSTREAM *s) {}
long mm_diskerror(MAILSTREAM *s, long e, long serious) { return T; }
void mm_fatal(char *str) { fprintf(stderr, "fatal: %s\n", str); }

int main(int argc, char **argv)
{
  static char dir[4096];
  char *name, *slash, *op;
  MAILSTREAM *st;
  int ok = 1;
  if (argc < 3) { fprintf(stderr, "usage: uwmodify DIR/NAME OP ...\n"); return 2; }
#include "linkage.c"
  snprintf(dir, sizeof dir, "%s", argv[1]);
  if (!(slash = strrchr(dir, '/'))) return 2;
  *slash = '\0';
  name = slash + 1;
  op = argv[2];
  env_init(getenv("USER") ? getenv("USER") : "uwmodify", dir);
  if (!strcmp(op, "append")) {
    FILE *f;
    char *buf;
    long len;
    STRING msg;
    if (argc < 4 || !(f = fopen(argv[3], "rb"))) return 2;
    fseek(f, 0, SEEK_END); len = ftell(f); rewind(f);
    buf = malloc(len + 1);
    if (fread(buf, 1, len, f) != (size_t) len) return 2;
    fclose(f);
    INIT(&msg, mail_string, buf, len);
    return mail_append_full(NIL, name, argc > 4 ? argv[4] : NIL, NIL, &msg) ? 0 : 1;
  }
  if (!(st = mail_open(NIL, name, NIL)) || st->rdonly) {
    fprintf(stderr, "cannot open %s read-write\n", name);
    return 1;
  }
  if (!strcmp(op, "open")) ;
  else if (!strcmp(op, "setflag") && argc == 5) mail_setflag_full(st, argv[3], argv[4], ST_UID);
  else if (!strcmp(op, "clearflag") && argc == 5) mail_clearflag_full(st, argv[3], argv[4], ST_UID);
  else if (!strcmp(op, "expunge") && argc == 4) {
    mail_setflag_full(st, argv[3], "\\Deleted", ST_UID);
    ok = mail_expunge(st) ? 1 : 0;
  }
  else { fprintf(stderr, "bad operation %s\n", op); ok = 0; }
  mail_close(st);
  return ok ? 0 : 1;
}
