/* Private interface of the files layer (src/io/), in parts that build on
 * each other:
 *
 *   file.c          every file-system call, with a fault-injection hook, and
 *                   crash-safe replacement of a file (temporary, fsync,
 *                   rename, fsync of the directory)
 *   crc32c.c        CRC32C (Castagnoli) of the tensor data
 *   json.c          a strict JSON reader that decodes strings in place
 *   numbers.c       exact, locale-independent doubles in metadata text
 *   safetensors_read.c / safetensors_write.c
 *                   parse and validate a file into a table of tensor views,
 *                   read a view of any dtype as float32; write named float32
 *                   tensors and metadata crash-safely
 *
 * vikt_save()/vikt_load() (model_io.c) are one user; checkpoints
 * (checkpoint.c: optimizer state as more named tensors and metadata, loaded
 * through an extension of the model loader) another; the vikt command-line
 * tool (inspect, diff) is meant to be a third. Nothing here is installed. */
#ifndef VIKT_IO_H
#define VIKT_IO_H

#include "../vikt_internal.h"

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ file layer */

/* Faults a test can inject into the Nth file operation of a model. */
enum vikt__fault {
    VIKT__FAULT_NONE = 0,
    VIKT__FAULT_EIO = 1,    /* the call fails with EIO */
    VIKT__FAULT_ENOSPC = 2, /* the call fails with ENOSPC */
    VIKT__FAULT_SHORT = 3   /* a read or write moves only half the bytes (legal;
                               the layer must carry on); other calls succeed */
};

/* Arm a fault at the model's file operation number `at` counted from now
 * (1 = the next one; 0 disarms), and return how many operations were counted
 * since the previous call. Operations are open, read, write, fsync, close and
 * rename of the file and open, fsync and close of its directory; clean-up
 * after a failure (closing, unlinking the temporary) is not counted and never
 * fails on purpose. VIKT_ERR_NOMEM (negative) if the model's I/O state cannot
 * be allocated. */
int64_t vikt__io_fault(vikt_model *m, int kind, int64_t at);

/* A file (or a caller's memory) opened for reading. `op` names the public
 * call in error messages ("vikt_load: dir/x.safetensors: ..."). */
typedef struct vikt__file {
    vikt_model *m;
    const char *op;
    const char *path;          /* "<memory>" for a memory source */
    int fd;                    /* -1 for a memory source */
    const unsigned char *mem;  /* memory source, or NULL */
    uint64_t size;             /* bytes, taken when opened */
} vikt__file;

int vikt__file_open(vikt__file *f, vikt_model *m, const char *op, const char *path);
void vikt__file_memory(vikt__file *f, vikt_model *m, const char *op, const void *data,
                       size_t size);
/* Exactly n bytes at offset, or VIKT_ERR_IO (error recorded). */
int vikt__file_read(vikt__file *f, uint64_t offset, void *buf, size_t n);
void vikt__file_close(vikt__file *f);

/* Crash-safe replacement of `path`: bytes go to a new temporary file in the
 * same directory; commit fsyncs it, renames it over `path` and fsyncs the
 * directory. Until the rename, `path` is untouched; any failure removes the
 * temporary. A process killed mid-way leaves `path` old or new, never torn
 * (the temporary, named "<path>.tmp-XXXXXX", may then remain). */
typedef struct vikt__writer {
    vikt_model *m;
    const char *op;
    const char *path;
    char *tmp;       /* the temporary's name, then the directory's (one block) */
    size_t tmp_size; /* bytes of that block */
    int fd;
} vikt__writer;

int vikt__writer_open(vikt__writer *w, vikt_model *m, const char *op, const char *path);
int vikt__writer_write(vikt__writer *w, const void *buf, size_t n);
/* Always finishes the writer: on failure the temporary is gone and `path` is
 * unchanged, except when only the final directory fsync fails (the new file
 * is then in place, and VIKT_ERR_IO says its durability is not certain). */
int vikt__writer_commit(vikt__writer *w);
void vikt__writer_abort(vikt__writer *w);

/* Record err with "op: path: message" on the model, and keep the text for the
 * load report. Returns err. */
int vikt__io_fail(vikt_model *m, int err, const char *op, const char *path, const char *fmt,
                  ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* The model's file state: the fault hook, the last I/O error text and the
 * last load's report. Made on first use; freed by vikt_model_destroy. */
#define VIKT__LOAD_STATS 6
typedef struct vikt__io_state {
    int64_t ops;      /* file operations counted since vikt__io_fault */
    int64_t fault_at; /* operation number to fail; 0 = none */
    int fault_kind;
    char last_error[VIKT__ERRMSG_MAX];
    char *report; /* NUL-terminated text, report_cap bytes; NULL until a load */
    size_t report_len, report_cap;
    int64_t report_dropped; /* lines left out to keep the report bounded */
    int64_t counts[VIKT__LOAD_STATS];
} vikt__io_state;

vikt__io_state *vikt__io_state_get(vikt_model *m); /* NULL when out of memory */

/* ------------------------------------------------------------------- CRC */

/* CRC32C, the Castagnoli polynomial 0x1EDC6F41 (reflected 0x82F63B78), as in
 * iSCSI (RFC 3720), ext4 and SSE4.2's crc32 instruction. Start with crc = 0;
 * passing the previous result continues it over more bytes. */
uint32_t vikt__crc32c(uint32_t crc, const void *data, size_t n);

/* --------------------------------------------------------------- numbers */

/* Doubles in metadata text (numbers.c), exact and independent of the
 * locale: C99's hexadecimal form built from the bits ("0x1.999999999999ap-4",
 * "-0x0p+0", "0x0.0000000000001p-1022" for the smallest subnormal; "inf",
 * "-inf", "nan" for the rest). get accepts exactly what put writes for a
 * finite value and nothing else (no decimal spelling, with '.' or ','). */
#define VIKT__NUM_MAX 32 /* bytes of a number as put writes it, with its NUL */
void vikt__put_double(double v, char out[VIKT__NUM_MAX]);
int vikt__get_double(const char *s, double *v); /* 1 and *v set, or 0 */
int vikt__hex_digit(int c);                     /* 0-15 for [0-9a-f], else -1 */

/* ------------------------------------------------------------------ JSON */

enum vikt__json_err {
    VIKT__JSON_OK = 0,
    VIKT__JSON_SYNTAX = 1, /* not JSON (RFC 8259) */
    VIKT__JSON_UTF8 = 2,   /* invalid UTF-8, or a \u escape that is no character */
    VIKT__JSON_DEPTH = 3,  /* arrays and objects nested deeper than the limit */
    VIKT__JSON_RANGE = 4   /* an integer too large for the caller */
};

/* A reader over a mutable buffer. Strings are decoded in place (a decoded
 * string is never longer than its JSON text), so reading allocates nothing. */
typedef struct vikt__json {
    unsigned char *s;
    size_t n;
    size_t pos;        /* next byte to read */
    int max_depth;
    int err;           /* enum vikt__json_err of the first error */
    const char *what;  /* static description of it */
    size_t err_at;     /* byte offset of it */
} vikt__json;

void vikt__json_init(vikt__json *j, unsigned char *s, size_t n, int max_depth);
/* Validate the whole text: one value with optional whitespace around it,
 * UTF-8 throughout, nesting within the limit. Rewinds to 0 on success. */
int vikt__json_check(vikt__json *j);
/* Skip whitespace; the next byte, or -1 at the end. */
int vikt__json_peek(vikt__json *j);
/* Skip whitespace; consume c and return 1 if it is next, else 0. */
int vikt__json_accept(vikt__json *j, int c);
/* Read a string and write its decoded bytes and a NUL to s[out...]; out may be
 * at most one past the position of the opening quote (the writes then never
 * pass the reads). *len receives the length without the NUL. */
int vikt__json_string(vikt__json *j, size_t out, size_t *len);
/* Read a non-negative integer written as plain digits (no sign, fraction or
 * exponent); VIKT__JSON_RANGE above max. */
int vikt__json_uint(vikt__json *j, uint64_t max, uint64_t *value);
/* Record an error at the current position (first one wins); returns err. */
int vikt__json_fail(vikt__json *j, int err, const char *what);
/* 1 if s[0..n) is well-formed UTF-8, else 0. */
int vikt__utf8_valid(const unsigned char *s, size_t n);

/* ------------------------------------------------------------ safetensors */

#define VIKT__ST_MAX_HEADER 100000000u /* bytes, as the reference implementation */
#define VIKT__ST_MAX_RANK 32           /* this reader's limit; vikt tensors have <= 4 */
#define VIKT__ST_MAX_DEPTH 64          /* JSON nesting accepted before the structure check */
#define VIKT__IO_CHUNK 65536           /* conversion buffer of a load */

/* Element types of the safetensors format (the values are private). */
enum vikt__dtype {
    VIKT__DT_BOOL, VIKT__DT_U8, VIKT__DT_I8, VIKT__DT_F8_E5M2, VIKT__DT_F8_E4M3,
    VIKT__DT_I16, VIKT__DT_U16, VIKT__DT_F16, VIKT__DT_BF16, VIKT__DT_I32, VIKT__DT_U32,
    VIKT__DT_F32, VIKT__DT_F64, VIKT__DT_I64, VIKT__DT_U64, VIKT__DT_COUNT
};

const char *vikt__dtype_name(int dtype);
size_t vikt__dtype_size(int dtype);
/* F16, BF16, F32, F64: the dtypes vikt_load puts into a model. (Every dtype
 * can be read as float32; see vikt__st_read_f32.) */
int vikt__dtype_is_float(int dtype);

/* One tensor of an opened file, decoded from its table record. Pointers
 * borrow the vikt__st and live until vikt__st_close. */
typedef struct vikt__st_tensor {
    uint32_t rec;        /* the record's offset in the table (a handle) */
    const char *name;
    const char *kind;    /* metadata "vikt.kind.<name>", or NULL */
    int dtype;
    int rank;
    int64_t shape[VIKT__ST_MAX_RANK];
    int64_t numel;
    uint64_t begin, end; /* byte offsets in the data section */
    int has_crc;         /* metadata "vikt.crc32c.<name>" was present */
    uint32_t crc;
} vikt__st_tensor;

/* An opened file: its header block holds the table of tensors and metadata
 * (built in place over the JSON text; see safetensors_read.c). */
typedef struct vikt__st {
    vikt__file *f;
    unsigned char *block;   /* header_len bytes from the allocator */
    size_t block_size;
    const uint32_t *by_offset; /* record offsets in data order */
    const uint32_t *by_name;   /* the same, by name */
    const uint32_t *meta;      /* metadata pair offsets, by key */
    int64_t ntensors, nmeta;
    uint64_t data_start, data_size;
    int marks_kinds; /* the file has a "vikt.kind.<name>" pair (vikt wrote it) */
} vikt__st;

/* Read, parse and validate the header of f; every malformation is
 * VIKT_ERR_FORMAT with a message naming the file and the problem. Allocates
 * header length bytes (at most the file's size) and nothing else. */
int vikt__st_open(vikt__st *st, vikt__file *f);
void vikt__st_close(vikt__st *st);
/* The i-th tensor in data order (0 <= i < ntensors). */
void vikt__st_at(const vikt__st *st, int64_t i, vikt__st_tensor *t);
/* Find by name; 1 if found (t filled), 0 if not. */
int vikt__st_find(const vikt__st *st, const char *name, vikt__st_tensor *t);
/* The i-th metadata pair in key order; the value of a key, or NULL. */
void vikt__st_meta_at(const vikt__st *st, int64_t i, const char **key, const char **value);
const char *vikt__st_meta(const vikt__st *st, const char *key);
/* What a tensor is, as the file says: its "vikt.kind.<name>" ("buffer",
 * "optimizer", ...); "parameter" when it has none but the file marks kinds
 * (vikt_save labels only buffers); NULL when the file marks none (written by
 * PyTorch or another tool): then a tensor may be either. */
const char *vikt__st_kind(const vikt__st *st, const vikt__st_tensor *t);
/* A tensor of the file is of another kind than a model tensor of its name:
 * the file says "parameter" or "buffer", and not what t is. Gives the
 * file's kind then (for messages), else NULL. */
const char *vikt__st_kind_clash(const vikt__st *st, const vikt__st_tensor *f,
                                const vikt_tensor *t);
/* A byte and a pointer a caller may keep with each tensor while the file is
 * open (zero after open), e.g. what a loader decided and the destination. */
int vikt__st_mark(const vikt__st *st, const vikt__st_tensor *t);
void vikt__st_set_mark(vikt__st *st, const vikt__st_tensor *t, int mark);
void *vikt__st_slot(const vikt__st *st, const vikt__st_tensor *t);
void vikt__st_set_slot(vikt__st *st, const vikt__st_tensor *t, void *p);

/* Read a tensor of any dtype as numel float32 into dst, through chunk
 * (VIKT__IO_CHUNK bytes, 8-aligned), checking its CRC32C when it has one.
 * With dst NULL only the CRC is checked. The conversion is exact for BOOL
 * (0 or 1), every 8- and 16-bit dtype (F8_E5M2, F8_E4M3 as OCP "fn": no
 * infinities, max 448), and F32; F64 rounds to the nearest float32 as torch's
 * .float() does, and so do integers of 32 and 64 bits beyond 2^24. */
int vikt__st_read_f32(vikt__st *st, const vikt__st_tensor *t, float *dst, unsigned char *chunk);

/* A float32 tensor to write. kind, when not NULL, is stored as the metadata
 * "vikt.kind.<name>" (vikt_save writes "buffer" for buffers). */
typedef struct vikt__st_entry {
    const char *name;
    const char *kind;
    int rank;
    const int64_t *shape;
    const float *data;
    int64_t numel;
} vikt__st_entry;

/* Write n tensors as F32 and the metadata pairs meta[2k] -> meta[2k+1] to
 * path crash-safely. The metadata also gets "format": "pt" and one
 * "vikt.crc32c.<name>" per tensor. Output is a pure function of the input. */
int vikt__st_write(vikt_model *m, const char *op, const char *path, const vikt__st_entry *t,
                   int64_t n, const char *const *meta, int64_t nmeta);

/* ---------------------------------------------------------------- loading */

/* What the model loader (model_io.c) decided for each tensor of a file, kept
 * as its mark (vikt__st_mark); the slot holds the destination. */
enum vikt__load_mark {
    VIKT__MARK_NONE = 0,
    VIKT__MARK_LOAD = 1,     /* into the model's tensor of that name (slot: the vikt_tensor) */
    VIKT__MARK_CREATE = 2,   /* created in an empty model (slot: the vikt_tensor, once made) */
    VIKT__MARK_MISMATCH = 3, /* the model's, but of another shape or dtype */
    VIKT__MARK_IGNORED = 4,  /* of another kind than parameter or buffer: not the model's */
    VIKT__MARK_CLAIMED = 5   /* of another kind, loaded by an extension (slot: numel floats) */
};

/* What a checkpoint loads besides the model's tensors, in the loader's own
 * all-or-nothing order: match, check, verify every CRC, create, prepare,
 * copy, then commit or discard. */
typedef struct vikt__load_ext vikt__load_ext;
struct vikt__load_ext {
    /* The model's tensors are matched and nothing has changed: validate the
     * rest of the file and claim the tensors to load (vikt__load_claim). */
    int (*check)(vikt__load_ext *x, vikt__st *st);
    /* Every CRC is verified and tensors are created: allocate, and give each
     * claimed tensor its destination (vikt__st_set_slot). A failure must
     * leave nothing allocated. */
    int (*prepare)(vikt__load_ext *x, vikt__st *st);
    /* After a successful prepare, one of the two: every value was copied
     * (take them into use), or a read failed (free what prepare made). */
    void (*commit)(vikt__load_ext *x);
    void (*discard)(vikt__load_ext *x);
};

/* Mark a tensor of another kind for loading by the extension. */
void vikt__load_claim(vikt__st *st, const vikt__st_tensor *t);
/* A strict load of path (or, with path NULL, of the size bytes at data) into
 * m (as vikt_load), extended by x; op names the public call. The report and
 * counts are the load's, as for vikt_load. */
int vikt__load_with(vikt_model *m, const char *op, const char *path, const void *data,
                    size_t size, vikt__load_ext *x);

/* vikt_checkpoint_load and vikt_lora_load on a file, or with path NULL on
 * the size bytes at data ("<memory>" in messages), through the same code:
 * how the fuzz target reaches their metadata parsers. */
int vikt__checkpoint_load_from(vikt_model *m, vikt_optimizer *opt, const char *path,
                               const void *data, size_t size);
int64_t vikt__lora_load_from(vikt_model *m, const char *path, const void *data, size_t size);

/* The CRC32C a checkpoint keeps of its own metadata (checkpoint.c) when
 * vikt__st_write writes e and meta: the XOR of crc32c(key NUL value NUL)
 * over the pairs whose key starts with "vikt." (the "vikt.kind.<name>" pairs
 * of the entries included), except "vikt.checkpoint.crc32c" and the
 * per-tensor "vikt.crc32c.<name>". */
uint32_t vikt__checkpoint_crc(const vikt__st_entry *e, int64_t n, const char *const *meta,
                              int64_t nmeta);

/* Messages quote names and paths shortened to keep the problem visible in
 * the model's fixed-size error text: "%s%s" with these two. */
const char *vikt__clip_prefix(const char *s, size_t max); /* "..." or "" */
const char *vikt__clip_tail(const char *s, size_t max);   /* the last max bytes */

/* ------------------------------------------------------- pruning masks */

#define VIKT__MASK_KEY "vikt.mask." /* the prefix of every mask's metadata key */

/* vikt_save's metadata for the pruning masks (mask_io.c): pairs[2i] is
 * "vikt.mask.<name>", pairs[2i + 1] the mask in base64; n pairs, none
 * (and nothing allocated) for a model without masks. */
typedef struct vikt__mask_meta {
    const char **pairs;
    int64_t n;
    char *text; /* the keys and values, one block */
    size_t text_size;
} vikt__mask_meta;

int vikt__mask_meta_make(vikt_model *m, const char *op, vikt__mask_meta *mm);
void vikt__mask_meta_free(vikt_model *m, vikt__mask_meta *mm);

/* A load's masks, in two steps so that a load that fails changes nothing:
 * prepare (before anything is copied) checks every mask entry and decodes
 * those of the tensors `wanted` says will be loaded; commit (after the copy)
 * gives each loaded tensor the file's mask, or none, and zeroes its masked
 * values. free releases what commit did not take. */
typedef int (*vikt__st_pred)(const vikt__st *st, const vikt__st_tensor *t);
typedef struct vikt__mask_load {
    struct vikt__mask_pending *p;
    int64_t n;
} vikt__mask_load;

int vikt__mask_load_prepare(vikt_model *m, vikt__st *st, const char *op, vikt__st_pred wanted,
                            vikt__mask_load *ml);
void vikt__mask_load_commit(vikt__st *st, vikt__st_pred wanted, vikt__mask_load *ml);
void vikt__mask_load_free(vikt_model *m, vikt__mask_load *ml);

#endif
