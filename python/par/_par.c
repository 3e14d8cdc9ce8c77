/*
 * python/par/_par.c — the C half of the `par` Python module: a PAR runtime
 * in the Python process, over the embedding API (include/par/par.h) only.
 *
 * Owns three small types, wrapped by par/__init__.py (which owns the Python
 * API: keyword arguments, JSON, exceptions, asyncio):
 *   _Runtime  one par_runtime_t; calls, deploys, listings, close.
 *   _Port     where asynchronous answers land: a queue and an eventfd the
 *             asyncio loop watches (loop.add_reader). One per event loop.
 *   _Handle   a started call, for cancelling it.
 *   _Stream   a run streamed to the host (par_stream_start): its events
 *             queued by PAR's thread, taken by get() (blocking with the GIL
 *             released, or not, for asyncio, woken by its own eventfd).
 *
 * Threads and the GIL: every PAR function that may wait (calls, deploys,
 * close) runs with the GIL released, so Python threads call concurrently.
 * The completion of an asynchronous call runs on a PAR thread and never
 * touches Python: it appends the answer to its port's queue (a mutex, no
 * allocation beyond the entry) and writes the eventfd; the loop's thread then
 * drains the queue holding the GIL. So no PAR thread ever waits for the GIL,
 * and Python code never runs on a PAR thread.
 *
 * Built against the stable ABI (Py_LIMITED_API 3.9: one abi3 build serves
 * Python 3.9 and later) and linked with libpar's static archive, so the
 * installed module needs no libpar.so at run time.
 */
#define Py_LIMITED_API 0x03090000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <par/par.h>

/* ---- _Runtime ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD par_runtime_t *rt;
    pthread_mutex_t lock; /* users, closing */
    pthread_cond_t idle;
    long users; /* threads inside a PAR function with this runtime */
    int closing;
} RuntimeObject;

/* Takes the runtime for one PAR function; NULL (ValueError set) once closed. */
static par_runtime_t *rt_enter(RuntimeObject *self)
{
    pthread_mutex_lock(&self->lock);
    par_runtime_t *rt = self->closing ? NULL : self->rt;
    if (rt)
        self->users++;
    pthread_mutex_unlock(&self->lock);
    if (rt == NULL)
        PyErr_SetString(PyExc_ValueError, "the runtime is closed");
    return rt;
}

static void rt_leave(RuntimeObject *self)
{
    pthread_mutex_lock(&self->lock);
    if (--self->users == 0)
        pthread_cond_broadcast(&self->idle);
    pthread_mutex_unlock(&self->lock);
}

/* An error from the library as (status, message): par/__init__.py makes the exception. */
static PyObject *status_error(int status, char *msg)
{
    PyObject *r = Py_BuildValue("(is)", status, msg ? msg : par_strerror(status));
    free(msg);
    return r;
}

static int runtime_init(PyObject *o, PyObject *args, PyObject *kw)
{
    RuntimeObject *self = (RuntimeObject *)o;
    static char *kwlist[] = {"config_file", "config_text", "allow_unsigned", NULL};
    const char *file = NULL, *text = NULL;
    Py_ssize_t tlen = 0;
    int allow_unsigned = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|zz#p", kwlist, &file, &text, &tlen,
                                     &allow_unsigned))
        return -1;
    if (self->rt) {
        PyErr_SetString(PyExc_RuntimeError, "the runtime is already initialised");
        return -1;
    }
    int rc;
    char *err = NULL;
    par_runtime_t *rt = NULL;
    Py_BEGIN_ALLOW_THREADS;
    if (file || text) {
        rc = par_runtime_new_from_config(file, text, (size_t)tlen, &rt, &err);
    } else {
        /* no configuration: the local default of `par serve` without --config */
        par_config_t cfg;
        par_config_init(&cfg);
        cfg.allow_unsigned = allow_unsigned;
        rc = par_runtime_new(&cfg, &rt);
    }
    Py_END_ALLOW_THREADS;
    if (rc != PAR_OK) {
        PyObject *e = status_error(rc, err);
        if (e)
            PyErr_SetObject(PyExc_RuntimeError, e); /* par/__init__.py turns it into par.Error */
        Py_XDECREF(e);
        return -1;
    }
    self->rt = rt;
    return 0;
}

static PyObject *runtime_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    RuntimeObject *self = (RuntimeObject *)alloc(type, 0);
    if (self == NULL)
        return NULL;
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->idle, NULL);
    return (PyObject *)self;
}

/* Waits for the threads inside PAR, then destroys the runtime (calls still
 * in flight are answered `draining`). GIL released. */
static void runtime_shut(RuntimeObject *self)
{
    pthread_mutex_lock(&self->lock);
    self->closing = 1;
    while (self->users > 0)
        pthread_cond_wait(&self->idle, &self->lock);
    par_runtime_t *rt = self->rt;
    self->rt = NULL;
    pthread_mutex_unlock(&self->lock);
    par_runtime_destroy(rt);
}

static PyObject *runtime_close(PyObject *o, PyObject *unused)
{
    RuntimeObject *self = (RuntimeObject *)o;
    Py_BEGIN_ALLOW_THREADS;
    runtime_shut(self);
    Py_END_ALLOW_THREADS;
    Py_RETURN_NONE;
}

static void runtime_dealloc(PyObject *o)
{
    RuntimeObject *self = (RuntimeObject *)o;
    PyTypeObject *tp = Py_TYPE(o);
    if (self->rt) {
        Py_BEGIN_ALLOW_THREADS;
        runtime_shut(self);
        Py_END_ALLOW_THREADS;
    }
    pthread_mutex_destroy(&self->lock);
    pthread_cond_destroy(&self->idle);
    freefunc f = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    f(o);
    Py_DECREF(tp);
}

/* The options of a call: the positional and keyword arguments shared by
 * call() and start(). Strings and bytes are borrowed from `args`. */
typedef struct {
    par_call_opts_t o;
    Py_ssize_t ilen, clen;
} call_args_t;

static int parse_call(PyObject *args, PyObject *kw, int skip, call_args_t *a)
{
    static char *kwlist[] = {"agent_id",   "input",    "context",    "subject", "tenant",
                             "timeout_ms", "trace_id", "request_id", NULL};
    memset(a, 0, sizeof(*a));
    unsigned long timeout = 0;
    PyObject *rest = PyTuple_GetSlice(args, skip, PyTuple_Size(args));
    if (rest == NULL)
        return -1;
    int ok = PyArg_ParseTupleAndKeywords(
        rest, kw, "sy#|z#zzkzz", kwlist, &a->o.agent_id, &a->o.input, &a->ilen, &a->o.context,
        &a->clen, &a->o.subject, &a->o.tenant, &timeout, &a->o.trace_id, &a->o.request_id);
    Py_DECREF(rest); /* its items are still referenced by `args` */
    if (!ok)
        return -1;
    a->o.input_len = (size_t)a->ilen;
    a->o.context_len = (size_t)a->clen;
    a->o.timeout_ms = timeout > UINT32_MAX ? UINT32_MAX : (uint32_t)timeout;
    return 0;
}

/* call(agent_id, input_json, context_json=None, subject=None, tenant=None,
 *      timeout_ms=0, trace_id=None, request_id=None) -> (status, bytes) */
static PyObject *runtime_call(PyObject *o, PyObject *args, PyObject *kw)
{
    RuntimeObject *self = (RuntimeObject *)o;
    call_args_t a;
    if (parse_call(args, kw, 0, &a) != 0)
        return NULL;
    par_runtime_t *rt = rt_enter(self);
    if (rt == NULL)
        return NULL;
    par_result_t out;
    Py_BEGIN_ALLOW_THREADS;
    par_call_ex(rt, &a.o, &out);
    Py_END_ALLOW_THREADS;
    rt_leave(self);
    PyObject *r = Py_BuildValue("(iy#)", out.status, out.data ? out.data : "",
                                (Py_ssize_t)(out.data ? out.len : 0));
    par_result_free(&out);
    return r;
}

static PyObject *runtime_deploy(PyObject *o, PyObject *args)
{
    RuntimeObject *self = (RuntimeObject *)o;
    const char *src, *sha = NULL;
    if (!PyArg_ParseTuple(args, "s|z", &src, &sha))
        return NULL;
    par_runtime_t *rt = rt_enter(self);
    if (rt == NULL)
        return NULL;
    char *rec = NULL, *err = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = par_runtime_deploy(rt, src, sha, &rec, &err);
    Py_END_ALLOW_THREADS;
    rt_leave(self);
    if (rc != PAR_OK)
        return status_error(rc, err);
    PyObject *r = Py_BuildValue("(is)", rc, rec);
    free(rec);
    return r;
}

static PyObject *runtime_deploy_dir(PyObject *o, PyObject *args)
{
    RuntimeObject *self = (RuntimeObject *)o;
    const char *dir;
    if (!PyArg_ParseTuple(args, "s", &dir))
        return NULL;
    par_runtime_t *rt = rt_enter(self);
    if (rt == NULL)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = par_runtime_deploy_dir(rt, dir);
    Py_END_ALLOW_THREADS;
    rt_leave(self);
    return PyLong_FromLong(rc);
}

static PyObject *runtime_remove(PyObject *o, PyObject *args)
{
    RuntimeObject *self = (RuntimeObject *)o;
    const char *name, *version = NULL;
    if (!PyArg_ParseTuple(args, "s|z", &name, &version))
        return NULL;
    par_runtime_t *rt = rt_enter(self);
    if (rt == NULL)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = par_runtime_remove(rt, name, version);
    Py_END_ALLOW_THREADS;
    rt_leave(self);
    return PyLong_FromLong(rc);
}

/* packages() and metrics(): a text the library allocates, or (status, message). */
static PyObject *runtime_text(PyObject *o, int (*fn)(par_runtime_t *, char **, size_t *))
{
    RuntimeObject *self = (RuntimeObject *)o;
    par_runtime_t *rt = rt_enter(self);
    if (rt == NULL)
        return NULL;
    char *text = NULL;
    size_t len = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = fn(rt, &text, &len);
    Py_END_ALLOW_THREADS;
    rt_leave(self);
    if (rc != PAR_OK)
        return status_error(rc, NULL);
    PyObject *r = Py_BuildValue("(is#)", rc, text, (Py_ssize_t)len);
    free(text);
    return r;
}

static PyObject *runtime_packages(PyObject *o, PyObject *unused)
{
    return runtime_text(o, par_runtime_packages);
}

static PyObject *runtime_metrics(PyObject *o, PyObject *unused)
{
    return runtime_text(o, par_runtime_metrics);
}

static PyObject *agent_dict(const par_agent_info_t *a)
{
    return Py_BuildValue("{s:s,s:s,s:s,s:s,s:O}", "id", a->id, "package", a->package, "version",
                         a->version, "description", a->description, "public",
                         a->is_public ? Py_True : Py_False);
}

static PyObject *runtime_agents(PyObject *o, PyObject *args)
{
    RuntimeObject *self = (RuntimeObject *)o;
    int priv = 0;
    if (!PyArg_ParseTuple(args, "|p", &priv))
        return NULL;
    par_runtime_t *rt = rt_enter(self);
    if (rt == NULL)
        return NULL;
    par_agent_info_t *list = NULL;
    size_t n = 0;
    int rc = par_runtime_agents(rt, priv, &list, &n);
    rt_leave(self);
    if (rc != PAR_OK)
        return PyErr_NoMemory();
    PyObject *l = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; l && i < n; i++) {
        PyObject *d = agent_dict(&list[i]);
        if (d == NULL)
            Py_CLEAR(l);
        else
            PyList_SetItem(l, (Py_ssize_t)i, d);
    }
    par_agents_free(list, n);
    return l;
}

/* ---- _Port: asynchronous answers ------------------------------------------------------- */

typedef struct port_core port_core_t;

typedef struct answer {
    struct answer *next;
    port_core_t *port; /* referenced until the answer is queued */
    PyObject *token;   /* a strong reference taken with the GIL; released with it */
    int status;
    char *data;
    size_t len;
} answer_t;

/* What PAR threads touch: lives until the port object and every call that
 * may still answer into it let go. */
struct port_core {
    atomic_int refs;
    pthread_mutex_t lock;
    answer_t *head, **tail;
    int efd;
};

static void core_unref(port_core_t *p)
{
    if (atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    /* answers left here hold references to Python objects nobody will
     * release without the GIL: the port object drains before it lets go */
    for (answer_t *a = p->head, *n; a; a = n) {
        n = a->next;
        free(a->data);
        free(a);
    }
    close(p->efd);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

typedef struct {
    PyObject_HEAD port_core_t *core;
} PortObject;

static PyObject *port_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    port_core_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return PyErr_NoMemory();
    c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->efd < 0) {
        free(c);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->lock, NULL);
    c->tail = &c->head;
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    PortObject *self = (PortObject *)alloc(type, 0);
    if (self == NULL) {
        core_unref(c);
        return NULL;
    }
    self->core = c;
    return (PyObject *)self;
}

static PyObject *port_fileno(PyObject *o, PyObject *unused)
{
    return PyLong_FromLong(((PortObject *)o)->core->efd);
}

/* drain() -> [(token, status, bytes), ...]: the answers that arrived. */
static PyObject *port_drain(PyObject *o, PyObject *unused)
{
    port_core_t *c = ((PortObject *)o)->core;
    uint64_t v;
    if (read(c->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        return PyErr_SetFromErrno(PyExc_OSError);
    pthread_mutex_lock(&c->lock);
    answer_t *a = c->head;
    c->head = NULL;
    c->tail = &c->head;
    pthread_mutex_unlock(&c->lock);
    PyObject *l = PyList_New(0);
    while (a) {
        answer_t *n = a->next;
        PyObject *t = l ? Py_BuildValue("(Oiy#)", a->token, a->status, a->data ? a->data : "",
                                        (Py_ssize_t)(a->data ? a->len : 0))
                        : NULL;
        if (t == NULL || PyList_Append(l, t) != 0)
            Py_CLEAR(l); /* out of memory: the rest are dropped, their references released */
        Py_XDECREF(t);
        Py_DECREF(a->token);
        free(a->data);
        free(a);
        a = n;
    }
    return l;
}

static void port_dealloc(PyObject *o)
{
    PyTypeObject *tp = Py_TYPE(o);
    PyObject *et, *ev, *etb; /* an exception being raised must survive this */
    PyErr_Fetch(&et, &ev, &etb);
    PyObject *rest = port_drain(o, NULL); /* releases the tokens of answers already here */
    Py_XDECREF(rest);
    PyErr_Clear();
    PyErr_Restore(et, ev, etb);
    core_unref(((PortObject *)o)->core);
    freefunc f = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    f(o);
    Py_DECREF(tp);
}

/* ---- _Handle: a started call --------------------------------------------------------- */

typedef struct {
    PyObject_HEAD par_call_handle_t *h;
} HandleObject;

/* On a PAR thread, without the GIL: queue the answer (its entry was made by
 * start(), so nothing is allocated here), wake the loop. */
static void on_answer(void *arg, par_result_t *r)
{
    answer_t *a = arg;
    port_core_t *c = a->port;
    a->status = r->status;
    a->data = r->data; /* taken */
    a->len = r->len;
    pthread_mutex_lock(&c->lock);
    int was_empty = c->head == NULL;
    *c->tail = a;
    c->tail = &a->next;
    pthread_mutex_unlock(&c->lock);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t w = write(c->efd, &one, sizeof(one));
        (void)w; /* a full counter is still readable */
    }
    core_unref(c);
}

static PyObject *handle_cancel(PyObject *o, PyObject *unused)
{
    HandleObject *self = (HandleObject *)o;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = par_call_cancel(self->h);
    Py_END_ALLOW_THREADS;
    return PyBool_FromLong(rc == PAR_OK);
}

static void handle_dealloc(PyObject *o)
{
    PyTypeObject *tp = Py_TYPE(o);
    par_call_handle_free(((HandleObject *)o)->h);
    freefunc f = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    f(o);
    Py_DECREF(tp);
}

static PyObject *HandleType, *PortType;

/* start(port, token, agent_id, input_json, ...) -> _Handle: the answer comes
 * to `port` as (token, status, bytes). */
static PyObject *runtime_start(PyObject *o, PyObject *args, PyObject *kw)
{
    RuntimeObject *self = (RuntimeObject *)o;
    PyObject *port, *token;
    if (PyTuple_Size(args) < 2) {
        PyErr_SetString(PyExc_TypeError, "start(port, token, agent_id, input, ...)");
        return NULL;
    }
    port = PyTuple_GetItem(args, 0);
    token = PyTuple_GetItem(args, 1);
    if (port == NULL || token == NULL || !PyObject_TypeCheck(port, (PyTypeObject *)PortType)) {
        PyErr_SetString(PyExc_TypeError, "start: the first argument must be a _Port");
        return NULL;
    }
    call_args_t a;
    if (parse_call(args, kw, 2, &a) != 0)
        return NULL;
    HandleObject *h = PyObject_New(HandleObject, (PyTypeObject *)HandleType);
    answer_t *p = h ? calloc(1, sizeof(*p)) : NULL;
    if (p == NULL) {
        Py_XDECREF(h);
        return PyErr_NoMemory();
    }
    h->h = NULL;
    p->port = ((PortObject *)port)->core;
    p->token = token;
    atomic_fetch_add(&p->port->refs, 1);
    Py_INCREF(token); /* released by drain() */
    par_runtime_t *rt = rt_enter(self);
    int rc = rt ? PAR_OK : PAR_E_DRAINING;
    if (rt) {
        Py_BEGIN_ALLOW_THREADS;
        rc = par_call_start(rt, &a.o, on_answer, p, &h->h);
        Py_END_ALLOW_THREADS;
        rt_leave(self);
    }
    if (rc != PAR_OK) { /* nothing started: the callback will not run */
        Py_DECREF(token);
        core_unref(p->port);
        free(p);
        Py_DECREF(h);
        return rt ? PyErr_NoMemory() : NULL;
    }
    return (PyObject *)h;
}

/* ---- _Stream: a run's events ------------------------------------------------------------- */

/* The host side of par_stream_start: the pump thread queues each event here
 * (no GIL, no Python) and wakes the consumer (a condition for get(True), the
 * eventfd for asyncio); past STREAM_HIGH queued events it pauses the stream,
 * and get() resumes it below STREAM_LOW, so a slow consumer holds the agent
 * back instead of growing this queue. */
#define STREAM_HIGH 16
#define STREAM_LOW 4

typedef struct sitem {
    struct sitem *next;
    uint64_t seq;
    char *type; /* NULL at the end */
    int status;
    size_t len;
    char data[]; /* the JSON, NUL-terminated; the type follows it */
} sitem_t;

typedef struct {
    PyObject_HEAD par_stream_t *s;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    sitem_t *head, **tail;
    int count, paused, done, oom, efd;
} StreamObject;

static int on_stream(void *arg, const par_stream_event_t *ev)
{
    StreamObject *self = arg;
    size_t tl = ev->type ? strlen(ev->type) + 1 : 0;
    sitem_t *it = malloc(sizeof(*it) + ev->len + 1 + tl);
    pthread_mutex_lock(&self->lock);
    if (it == NULL) {
        self->oom = 1; /* the consumer raises out_of_memory */
    } else {
        it->next = NULL;
        it->seq = ev->seq;
        it->status = ev->status;
        it->len = ev->len;
        memcpy(it->data, ev->data, ev->len);
        it->data[ev->len] = '\0';
        it->type = ev->type ? memcpy(it->data + ev->len + 1, ev->type, tl) : NULL;
        *self->tail = it;
        self->tail = &it->next;
        self->count++;
    }
    if (ev->end)
        self->done = 1;
    int pause = self->count >= STREAM_HIGH && !ev->end;
    if (pause)
        self->paused = 1;
    pthread_cond_signal(&self->cond);
    pthread_mutex_unlock(&self->lock);
    uint64_t one = 1;
    if (write(self->efd, &one, sizeof(one)) < 0) { /* a full counter is still readable */
    }
    return pause ? PAR_STREAM_PAUSE : PAR_STREAM_CONTINUE;
}

static PyObject *StreamType;
/* stream(agent_id, input_json, ...) -> _Stream, or (status, error_json) when refused. */
static PyObject *runtime_stream(PyObject *o, PyObject *args, PyObject *kw)
{
    RuntimeObject *rself = (RuntimeObject *)o;
    call_args_t a;
    if (parse_call(args, kw, 0, &a) != 0)
        return NULL;
    StreamObject *self = PyObject_New(StreamObject, (PyTypeObject *)StreamType);
    if (self == NULL)
        return NULL;
    self->s = NULL;
    self->head = NULL;
    self->tail = &self->head;
    self->count = self->paused = self->done = self->oom = 0;
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->cond, NULL);
    self->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->efd < 0) {
        Py_DECREF(self);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    par_runtime_t *rt = rt_enter(rself);
    if (rt == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    char *err = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = par_stream_start(rt, &a.o, on_stream, self, &self->s, &err);
    Py_END_ALLOW_THREADS;
    rt_leave(rself);
    if (rc != PAR_OK) {
        Py_DECREF(self);
        PyObject *r = Py_BuildValue("(iy)", rc, err ? err : "");
        free(err);
        return r;
    }
    return (PyObject *)self;
}

/* get(block) -> (seq, type|None, bytes, status) or None (nothing yet, block=False). */
static PyObject *stream_get(PyObject *o, PyObject *args)
{
    StreamObject *self = (StreamObject *)o;
    int block = 1;
    if (!PyArg_ParseTuple(args, "|p", &block))
        return NULL;
    sitem_t *it = NULL;
    int resume = 0, oom = 0;
    Py_BEGIN_ALLOW_THREADS;
    pthread_mutex_lock(&self->lock);
    while (block && self->head == NULL && !self->oom && self->s)
        pthread_cond_wait(&self->cond, &self->lock);
    oom = self->oom && self->head == NULL;
    it = self->head;
    if (it) {
        self->head = it->next;
        if (self->head == NULL)
            self->tail = &self->head;
        self->count--;
    }
    if (self->paused && self->count <= STREAM_LOW) {
        self->paused = 0;
        resume = 1;
    }
    pthread_mutex_unlock(&self->lock);
    if (resume && self->s)
        par_stream_resume(self->s);
    Py_END_ALLOW_THREADS;
    if (oom)
        return Py_BuildValue("(iOyi)", 0, Py_None, "", PAR_E_NO_MEMORY);
    if (it == NULL)
        Py_RETURN_NONE;
    PyObject *r = it->type ? Py_BuildValue("(Ksy#i)", (unsigned long long)it->seq, it->type,
                                           it->data, (Py_ssize_t)it->len, it->status)
                           : Py_BuildValue("(KOy#i)", 0ULL, Py_None, it->data, (Py_ssize_t)it->len,
                                           it->status);
    free(it);
    return r;
}

/* Reads the eventfd (the asyncio reader calls this before looking again). */
static PyObject *stream_clear(PyObject *o, PyObject *unused)
{
    uint64_t v;
    return PyBool_FromLong(read(((StreamObject *)o)->efd, &v, sizeof(v)) == sizeof(v));
}

static PyObject *stream_fileno(PyObject *o, PyObject *unused)
{
    return PyLong_FromLong(((StreamObject *)o)->efd);
}

static PyObject *stream_cancel(PyObject *o, PyObject *unused)
{
    StreamObject *self = (StreamObject *)o;
    int rc = PAR_E_RUN_ENDED;
    if (self->s) {
        Py_BEGIN_ALLOW_THREADS;
        rc = par_stream_cancel(self->s);
        Py_END_ALLOW_THREADS;
    }
    return PyBool_FromLong(rc == PAR_OK);
}

/* close(): cancels a run not ended, stops the events (idempotent). */
static PyObject *stream_close(PyObject *o, PyObject *unused)
{
    StreamObject *self = (StreamObject *)o;
    par_stream_t *s = self->s;
    if (s) {
        Py_BEGIN_ALLOW_THREADS;
        par_stream_free(s); /* joins the pump: no callback after this */
        Py_END_ALLOW_THREADS;
        pthread_mutex_lock(&self->lock);
        self->s = NULL;
        pthread_cond_broadcast(&self->cond);
        pthread_mutex_unlock(&self->lock);
    }
    Py_RETURN_NONE;
}

static void stream_dealloc(PyObject *o)
{
    StreamObject *self = (StreamObject *)o;
    PyTypeObject *tp = Py_TYPE(o);
    PyObject *r = stream_close(o, NULL);
    Py_XDECREF(r);
    for (sitem_t *it = self->head, *n; it; it = n) {
        n = it->next;
        free(it);
    }
    if (self->efd >= 0)
        close(self->efd);
    pthread_mutex_destroy(&self->lock);
    pthread_cond_destroy(&self->cond);
    freefunc f = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    f(o);
    Py_DECREF(tp);
}

static PyMethodDef stream_methods[] = {
    {"get", stream_get, METH_VARARGS, "get(block=True) -> (seq, type|None, bytes, status) | None"},
    {"clear", stream_clear, METH_NOARGS, "reads the eventfd"},
    {"fileno", stream_fileno, METH_NOARGS, "the eventfd to watch"},
    {"cancel", stream_cancel, METH_NOARGS, "cancel() -> bool: the run was cancelled"},
    {"close", stream_close, METH_NOARGS, "close(): cancels a run not ended, frees the stream"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot stream_slots[] = {
    {Py_tp_dealloc, stream_dealloc},
    {Py_tp_methods, stream_methods},
    {0, NULL},
};

static PyType_Spec stream_spec = {"par._par._Stream", sizeof(StreamObject), 0, Py_TPFLAGS_DEFAULT,
                                  stream_slots};

/* ---- module ------------------------------------------------------------------------------ */

static PyObject *mod_statuses(PyObject *m, PyObject *unused)
{
    PyObject *l = PyList_New(0);
    for (int s = 0; l && s < PAR_STATUS_COUNT; s++) {
        PyObject *t =
            Py_BuildValue("(iiss)", s, par_status_http(s), par_status_name(s), par_strerror(s));
        if (t == NULL || PyList_Append(l, t) != 0)
            Py_CLEAR(l);
        Py_XDECREF(t);
    }
    return l;
}

static PyObject *mod_version(PyObject *m, PyObject *unused)
{
    return PyUnicode_FromString(par_version());
}

static PyMethodDef runtime_methods[] = {
    {"call", (PyCFunction)(void (*)(void))runtime_call, METH_VARARGS | METH_KEYWORDS,
     "call(agent_id, input_json, ...) -> (status, bytes)"},
    {"start", (PyCFunction)(void (*)(void))runtime_start, METH_VARARGS | METH_KEYWORDS,
     "start(port, token, agent_id, input_json, ...) -> _Handle"},
    {"stream", (PyCFunction)(void (*)(void))runtime_stream, METH_VARARGS | METH_KEYWORDS,
     "stream(agent_id, input_json, ...) -> _Stream | (status, error_json)"},
    {"deploy", runtime_deploy, METH_VARARGS, "deploy(source, sha256=None) -> (status, text)"},
    {"deploy_dir", runtime_deploy_dir, METH_VARARGS, "deploy_dir(dir) -> status"},
    {"remove", runtime_remove, METH_VARARGS, "remove(name, version=None) -> status"},
    {"packages", runtime_packages, METH_NOARGS, "packages() -> (status, json)"},
    {"metrics", runtime_metrics, METH_NOARGS, "metrics() -> (status, text)"},
    {"agents", runtime_agents, METH_VARARGS, "agents(include_private=False) -> list"},
    {"close", runtime_close, METH_NOARGS, "close()"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot runtime_slots[] = {
    {Py_tp_new, runtime_new},
    {Py_tp_init, runtime_init},
    {Py_tp_dealloc, runtime_dealloc},
    {Py_tp_methods, runtime_methods},
    {Py_tp_doc, "A PAR runtime (internal: use par.Runtime)."},
    {0, NULL},
};

static PyType_Spec runtime_spec = {"par._par._Runtime", sizeof(RuntimeObject), 0,
                                   Py_TPFLAGS_DEFAULT, runtime_slots};

static PyMethodDef port_methods[] = {
    {"fileno", port_fileno, METH_NOARGS, "the eventfd to watch"},
    {"drain", port_drain, METH_NOARGS, "drain() -> [(token, status, bytes)]"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot port_slots[] = {
    {Py_tp_new, port_new},
    {Py_tp_dealloc, port_dealloc},
    {Py_tp_methods, port_methods},
    {Py_tp_doc, "Where asynchronous answers land (internal)."},
    {0, NULL},
};

static PyType_Spec port_spec = {"par._par._Port", sizeof(PortObject), 0, Py_TPFLAGS_DEFAULT,
                                port_slots};

static PyMethodDef handle_methods[] = {
    {"cancel", handle_cancel, METH_NOARGS, "cancel() -> bool: taken back from its worker"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot handle_slots[] = {
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_methods, handle_methods},
    {Py_tp_doc, "A started call (internal)."},
    {0, NULL},
};

static PyType_Spec handle_spec = {"par._par._Handle", sizeof(HandleObject), 0, Py_TPFLAGS_DEFAULT,
                                  handle_slots};

static PyMethodDef mod_methods[] = {
    {"statuses", mod_statuses, METH_NOARGS, "[(code, http, name, description)]"},
    {"version", mod_version, METH_NOARGS, "libpar's version"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT,
    "par._par",
    "PAR embedded (internal: use the par package).",
    -1,
    mod_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__par(void); /* the one exported symbol */
PyMODINIT_FUNC PyInit__par(void)
{
    PyObject *m = PyModule_Create(&moddef);
    if (m == NULL)
        return NULL;
    PyObject *rt = PyType_FromSpec(&runtime_spec);
    PyObject *port = PortType = PyType_FromSpec(&port_spec);
    HandleType = PyType_FromSpec(&handle_spec);
    StreamType = PyType_FromSpec(&stream_spec);
    if (rt == NULL || port == NULL || HandleType == NULL || StreamType == NULL ||
        PyModule_AddObject(m, "_Runtime", rt) != 0) {
        Py_XDECREF(rt);
        Py_XDECREF(port);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(HandleType);
    Py_INCREF(PortType); /* the module's references; the globals keep theirs */
    Py_INCREF(StreamType);
    if (PyModule_AddObject(m, "_Stream", StreamType) != 0 ||
        PyModule_AddObject(m, "_Handle", HandleType) != 0 ||
        PyModule_AddObject(m, "_Port", PortType) != 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
