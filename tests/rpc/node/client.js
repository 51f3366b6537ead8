'use strict';
// A SOFARPC Bolt client built on sofa-bolt-node: every request and heartbeat goes over ONE
// connection (requests are multiplexed by id, as Bolt allows).
//
//   node client.js --addr 127.0.0.1:PORT --service SIG --method M [--arg TEXT] [--delay MS]
//                  [--count N] [--concurrency C] [--codec hessian2|protobuf] [--oneway]
//                  [--heartbeats N] [--timeout MS] [--linger MS] [--delays MS,MS,...]
//
// Prints one JSON line per request: {"event":"response","id","ok","value"|"error","status",
// "ms"}, {"event":"timeout","id"} when no response came within --timeout (+1 s slack),
// {"event":"sent","id"} for one-way requests, {"event":"heartbeat_ack","id"} per heartbeat
// answer, {"event":"closed"} if the connection closes, and {"event":"done",...} at the end.

const net = require('net');
const pump = require('pump');
const { bolt, proto, args, emit } = require('./common');
const java = require('js-to-java');

const opts = args(process.argv.slice(2));
const [host, port] = String(opts.addr).split(':');
const count = Number(opts.count || 1);
const concurrency = Math.max(1, Number(opts.concurrency || 1));
const timeout = Number(opts.timeout || 3000);
const codec = String(opts.codec || 'hessian2');
const heartbeats = Number(opts.heartbeats || 0);
const oneway = !!opts.oneway;

const sentReqs = new Map();
const options = { sentReqs, proto, codecType: codec };
const encoder = bolt.encoder(options);
const decoder = bolt.decoder(options);
const socket = net.connect(Number(port), host);
socket.setNoDelay(true);

const pending = new Map(); // id -> { start, timer }
let nextId = 0;
let started = 0;
let finished = 0;
let ok = 0;
let failed = 0;
let hbPending = heartbeats;
let closed = false;

const finishIfDone = () => {
  if (finished === count && hbPending === 0) {
    const linger = Number(opts.linger || 0);
    setTimeout(() => {
      emit({ event: 'done', ok, failed, count });
      socket.end();
      process.exit(0);
    }, linger);
  }
};

const complete = (id, line) => {
  const p = pending.get(id);
  if (!p) return;
  clearTimeout(p.timer);
  pending.delete(id);
  sentReqs.delete(id);
  line.ms = Date.now() - p.start;
  emit(line);
  finished++;
  if (line.ok) ok++; else failed++;
  startMore();
  finishIfDone();
};

const request = i => {
  const id = ++nextId;
  const textArg = opts.arg !== undefined ? `${opts.arg}` : `req${i}`;
  // --delays 60,0,30: the server waits delays[i % n] ms (method slow), so answers come back
  // out of order.
  const delays = opts.delays ? String(opts.delays).split(',').map(Number) : null;
  const delay = delays ? delays[i % delays.length] : Number(opts.delay || 0);
  const argList = codec === 'protobuf' ?
    [{ text: textArg, delay_ms: delay }] :
    [ java.String(textArg), java.int(delay) ];
  const req = {
    serverSignature: String(opts.service),
    methodName: String(opts.method || 'echo'),
    args: argList,
    timeout,
    oneway,
  };
  sentReqs.set(id, { req });
  if (oneway) {
    encoder.writeRequest(id, req, err => {
      emit({ event: 'sent', id, error: err ? String(err) : undefined });
      sentReqs.delete(id);
      finished++;
      ok++;
      startMore();
      finishIfDone();
    });
    return;
  }
  const timer = setTimeout(() => {
    complete(id, { event: 'timeout', id, ok: false, error: 'no response within timeout' });
  }, timeout + 1000);
  pending.set(id, { start: Date.now(), timer });
  encoder.writeRequest(id, req, err => {
    if (err) complete(id, { event: 'response', id, ok: false, error: 'write: ' + err });
  });
};

const startMore = () => {
  while (started < count && started - finished < concurrency && !closed) {
    request(started++);
  }
};

decoder.on('response', res => {
  const data = res.data || {};
  if (data.error) {
    complete(res.packetId, { event: 'response', id: res.packetId, ok: false, status: data.status, error: String(data.error.message || data.error) });
  } else {
    const v = data.appResponse;
    const value = v && typeof v === 'object' && 'text' in v ? v.text : v;
    complete(res.packetId, { event: 'response', id: res.packetId, ok: true, status: data.status, value });
  }
});
decoder.on('heartbeat_ack', hb => {
  emit({ event: 'heartbeat_ack', id: hb.packetId });
  hbPending--;
  finishIfDone();
});

pump(encoder, socket, decoder, err => {
  closed = true;
  emit({ event: 'closed', error: err ? String(err.message || err) : undefined, pending: pending.size });
  for (const id of [ ...pending.keys() ]) {
    complete(id, { event: 'response', id, ok: false, error: 'connection closed' });
  }
  emit({ event: 'done', ok, failed, count });
  process.exit(0);
});

socket.once('connect', () => {
  for (let h = 0; h < heartbeats; h++) {
    encoder.writeHeartbeat(1000000 + h, { clientUrl: `tern-test-${h}` });
  }
  startMore();
  finishIfDone();
});
