#!/usr/bin/env node
// peers.mjs runs one of the independent JavaScript MIME parsers over .eml files and prints what
// it read, one JSON object per file (JSON lines), in the order given. The parser cross-check
// (e2e/crosscheck) compares these records with mailpipe's parser.
//
// Usage: node peers.mjs mailparser|postal-mime [FILE.eml ...]
//        (with no files, the paths are read from stdin, one per line)
//
// Each line: {path, ok, error, subject, from: {address, name} | null, to: [{address, name}],
// text, attachments: [{filename, size, sha256, contentType}]}.
//
// Both parsers run with their default options except where an option selects the semantics
// mailpipe documents, so that a difference means a different reading of the message rather than
// a different policy: a message/rfc822 part (forwarded mail) is always an attachment, never
// merged into the body (mailparser ignoreEmbedded, postal-mime forceRfc822Attachments), and a
// message/delivery-status part is an attachment, not text appended to the body (mailparser
// keepDeliveryStatus; postal-mime does so already). The output is the parser's own values,
// normalized only where the two APIs differ in shape (groups are flattened to their members,
// since mailpipe lists group members; a missing value is "" / null / []).

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { simpleParser } from 'mailparser';
import PostalMime from 'postal-mime';

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

// flatten turns a list of mailboxes and groups into the mailboxes, group members in place of
// their group.
function flatten(list) {
    const out = [];
    for (const a of list ?? []) {
        if (Array.isArray(a.group)) {
            out.push(...flatten(a.group));
        } else {
            out.push({ address: a.address ?? '', name: a.name ?? '' });
        }
    }
    return out;
}

const parsers = {
    async mailparser(raw) {
        const m = await simpleParser(raw, { ignoreEmbedded: true, keepDeliveryStatus: true });
        // An AddressObject, or an array of them when the header is repeated.
        const objs = (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
        const from = flatten(objs(m.from).flatMap((o) => o.value));
        return {
            subject: m.subject ?? '',
            from: from[0] ?? null,
            to: flatten(objs(m.to).flatMap((o) => o.value)),
            text: m.text ?? '',
            attachments: m.attachments.map((a) => ({
                filename: a.filename ?? '',
                size: a.content.length,
                sha256: sha256(a.content),
                // mailparser gives `false` for a Content-Type it cannot read (flanker's
                // spam-broken-ctype); only strings are kept.
                contentType: typeof a.contentType === 'string' ? a.contentType : '',
            })),
        };
    },

    async 'postal-mime'(raw) {
        const m = await PostalMime.parse(raw, { forceRfc822Attachments: true });
        const from = flatten(m.from ? [m.from] : []);
        return {
            subject: m.subject ?? '',
            from: from[0] ?? null,
            to: flatten(m.to),
            text: m.text ?? '',
            attachments: m.attachments.map((a) => {
                // content is an ArrayBuffer with the default attachmentEncoding.
                const buf = Buffer.from(a.content);
                return {
                    filename: a.filename ?? '',
                    size: buf.length,
                    sha256: sha256(buf),
                    contentType: a.mimeType ?? '',
                };
            }),
        };
    },
};

async function paths(args) {
    if (args.length > 0) {
        return args;
    }
    const out = [];
    for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
        if (line.trim() !== '') {
            out.push(line.trim());
        }
    }
    return out;
}

async function main() {
    const [name, ...args] = process.argv.slice(2);
    const parse = parsers[name];
    if (!parse) {
        console.error(`usage: node peers.mjs ${Object.keys(parsers).join('|')} [FILE.eml ...]`);
        process.exit(2);
    }
    for (const path of await paths(args)) {
        let rec;
        try {
            rec = { path, ok: true, error: '', ...(await parse(await readFile(path))) };
        } catch (err) {
            // A refused file is a result to compare, not a reason to stop.
            rec = { path, ok: false, error: String(err?.message ?? err), subject: '', from: null, to: [], text: '', attachments: [] };
        }
        process.stdout.write(JSON.stringify(rec) + '\n');
    }
}

await main();
