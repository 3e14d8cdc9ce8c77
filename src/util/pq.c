/*
 * util/pq.c — see pq.h. Any thread.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "util/pq.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_loaded;
static char g_error[300];

par_pq_api_t par__pq;

static void load(void)
{
    void *h = dlopen(PAR_PQ_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        snprintf(g_error, sizeof(g_error), "cannot load %s (PostgreSQL client): %s", PAR_PQ_SONAME,
                 dlerror());
        return;
    }
    par_pq_api_t a;
    struct {
        const char *name;
        void **slot;
    } syms[] = {
        {"PQconnectdb", (void **)&a.connectdb},
        {"PQconnectdbParams", (void **)&a.connectdb_params},
        {"PQstatus", (void **)&a.status},
        {"PQerrorMessage", (void **)&a.error_message},
        {"PQfinish", (void **)&a.finish},
        {"PQreset", (void **)&a.reset},
        {"PQsocket", (void **)&a.socket},
        {"PQexec", (void **)&a.exec},
        {"PQexecParams", (void **)&a.exec_params},
        {"PQresultStatus", (void **)&a.result_status},
        {"PQresultErrorMessage", (void **)&a.result_error_message},
        {"PQresultErrorField", (void **)&a.result_error_field},
        {"PQclear", (void **)&a.clear},
        {"PQntuples", (void **)&a.ntuples},
        {"PQnfields", (void **)&a.nfields},
        {"PQgetvalue", (void **)&a.getvalue},
        {"PQgetisnull", (void **)&a.getisnull},
        {"PQgetlength", (void **)&a.getlength},
        {"PQcmdTuples", (void **)&a.cmd_tuples},
        {"PQescapeLiteral", (void **)&a.escape_literal},
        {"PQfreemem", (void **)&a.freemem},
        {"PQconsumeInput", (void **)&a.consume_input},
        {"PQnotifies", (void **)&a.notifies},
        {"PQfname", (void **)&a.fname},
        {"PQftype", (void **)&a.ftype},
    };
    for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        /* POSIX: a function pointer travels through dlsym's void * */
        *syms[i].slot = dlsym(h, syms[i].name);
        if (*syms[i].slot == NULL) {
            snprintf(g_error, sizeof(g_error), "%s has no %s", PAR_PQ_SONAME, syms[i].name);
            return; /* left loaded: nothing of it ran */
        }
    }
    par__pq = a;
    g_loaded = 1;
}

int par_pq_load(void)
{
    pthread_once(&g_once, load);
    return g_loaded ? 0 : -1;
}

const char *par_pq_error(void)
{
    pthread_once(&g_once, load);
    return g_loaded ? NULL : g_error;
}
