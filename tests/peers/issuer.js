#!/usr/bin/env node
/*
 * A real OpenID Connect issuer for the end-to-end tests: oauth2-mock-server's
 * issuer and service (discovery, JWKS, token endpoint) behind a thin wrapper
 * that lets a test steer it:
 *
 *   node issuer.js --host 127.0.0.1 --port 0 [--cert C --key K] [--algs RS256,ES256]
 *
 * prints one JSON line {"issuer", "port", "kids": {alg: kid}} once listening.
 * Control routes (JSON in and out), always answered even when "down":
 *   POST /_control/token    {kid?, alg?, claims?, header?, omit?, expires_in?}
 *                           -> {"token"} signed by the issuer's key
 *   POST /_control/foreign  {alg, kid, claims?, expires_in?}
 *                           -> {"token"} signed by a key the issuer does not publish
 *   POST /_control/generate {alg} -> {"kid"}: a new key, published from now on
 *   POST /_control/retire   {kid}: stop publishing a key
 *   POST /_control/set      {down?, cache_control?}: 503 everything / JWKS header
 *   GET  /_control/public_pem?kid=K -> the key's public SPKI PEM as text
 *   GET  /_control/stats    -> {"discovery": n, "jwks": n}
 */
'use strict';
const http = require('node:http');
const https = require('node:https');
const fs = require('node:fs');
const jose = require('jose');
const { OAuth2Issuer } = require('oauth2-mock-server');
const { OAuth2Service } = require('oauth2-mock-server/dist/lib/oauth2-service');

function args() {
    const o = { host: '127.0.0.1', port: 0, algs: ['RS256', 'ES256'] };
    const a = process.argv.slice(2);
    for (let i = 0; i < a.length; i += 2) {
        const k = a[i].replace(/^--/, '');
        o[k] = k === 'algs' ? a[i + 1].split(',') : k === 'port' ? Number(a[i + 1]) : a[i + 1];
    }
    return o;
}

async function main() {
    const opt = args();
    const issuer = new OAuth2Issuer();
    const kids = {};
    for (const alg of opt.algs) kids[alg] = (await issuer.keys.generate(alg)).kid;
    const service = new OAuth2Service(issuer);
    /* like most real issuers, a client-credentials token names its client */
    service.on('beforeTokenSigning', (token, req) => {
        const cid = req.body && req.body.client_id;
        if (token.payload.sub === undefined && cid) token.payload.sub = cid;
    });
    const state = { down: false, cacheControl: null, retired: new Set(),
                    stats: { discovery: 0, jwks: 0 } };
    const foreign = {};

    const readBody = (req) => new Promise((resolve) => {
        let b = '';
        req.on('data', (c) => { b += c; });
        req.on('end', () => resolve(b ? JSON.parse(b) : {}));
    });
    const send = (res, code, obj, type) => {
        res.statusCode = code;
        res.setHeader('content-type', type || 'application/json');
        res.end(type ? obj : JSON.stringify(obj));
    };
    const keyFor = (b) => {
        if (b.kid) return b.kid;
        const k = issuer.keys.toJSON().find((x) => x.alg === (b.alg || 'RS256'));
        return k && k.kid;
    };

    async function control(req, res, url) {
        const b = req.method === 'POST' ? await readBody(req) : {};
        switch (url.pathname) {
        case '/_control/token': {
            const token = await issuer.buildToken({
                kid: keyFor(b),
                expiresIn: b.expires_in,
                scopesOrTransform: (header, payload) => {
                    Object.assign(header, b.header || {});
                    Object.assign(payload, b.claims || {});
                    for (const k of b.omit || []) delete payload[k];
                },
            });
            return send(res, 200, { token });
        }
        case '/_control/foreign': {
            const alg = b.alg || 'RS256';
            if (!foreign[alg]) foreign[alg] = await jose.generateKeyPair(alg);
            const now = Math.floor(Date.now() / 1000);
            const payload = { iss: issuer.url, iat: now, nbf: now - 10,
                              exp: now + (b.expires_in || 3600), ...(b.claims || {}) };
            const token = await new jose.SignJWT(payload)
                .setProtectedHeader({ alg, kid: b.kid, typ: 'JWT' })
                .sign(foreign[alg].privateKey);
            return send(res, 200, { token });
        }
        case '/_control/generate':
            return send(res, 200, { kid: (await issuer.keys.generate(b.alg || 'RS256')).kid });
        case '/_control/retire':
            state.retired.add(b.kid);
            return send(res, 200, {});
        case '/_control/set':
            if ('down' in b) state.down = !!b.down;
            if ('cache_control' in b) state.cacheControl = b.cache_control;
            return send(res, 200, {});
        case '/_control/public_pem': {
            const jwk = issuer.keys.toJSON().find((x) => x.kid === url.searchParams.get('kid'));
            const key = await jose.importJWK(jwk, jwk.alg);
            return send(res, 200, await jose.exportSPKI(key), 'text/plain');
        }
        case '/_control/stats':
            return send(res, 200, state.stats);
        default:
            return send(res, 404, { error: 'no such control route' });
        }
    }

    const handler = (req, res) => {
        const url = new URL(req.url, 'http://localhost');
        if (url.pathname.startsWith('/_control/')) {
            control(req, res, url).catch((e) => send(res, 500, { error: String(e) }));
            return;
        }
        if (state.down) return send(res, 503, { error: 'down for the test' });
        if (url.pathname === '/.well-known/openid-configuration') state.stats.discovery++;
        if (url.pathname === '/jwks') {
            state.stats.jwks++;
            if (state.cacheControl) res.setHeader('cache-control', state.cacheControl);
            const keys = issuer.keys.toJSON().filter((k) => !state.retired.has(k.kid));
            return send(res, 200, { keys });
        }
        return service.requestHandler(req, res);
    };

    const proto = opt.cert ? 'https' : 'http';
    const server = opt.cert
        ? https.createServer({ cert: fs.readFileSync(opt.cert), key: fs.readFileSync(opt.key) },
                             handler)
        : http.createServer(handler);
    server.listen(opt.port, opt.host, () => {
        const port = server.address().port;
        issuer.url = `${proto}://${opt.host}:${port}`;
        process.stdout.write(JSON.stringify({ issuer: issuer.url, port, kids }) + '\n');
    });
    const stop = () => server.close(() => process.exit(0));
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
}

main().catch((e) => {
    process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
    process.exit(1);
});
