'use strict';
// A SOFARPC Bolt server built on sofa-bolt-node (hessian 2 and protobuf content).
//
//   node server.js --name NAME [--port 0]
//
// Prints {"event":"listening","port":N} once bound, then one JSON line per request
// ({"event":"request","name","service","method","args","codec","id"}) and per heartbeat
// ({"event":"heartbeat"}), so a test can see which server got what.
// Methods: echo (answers "NAME:<arg>"), upper, slow (answers after --delay or the request's
// delay_ms / second argument), fail (a SERVER_EXCEPTION response), hang and notify (never
// answer: hang for upstream-killed tests, notify for one-way requests).

const net = require('net');
const pump = require('pump');
const { bolt, proto, args, emit } = require('./common');
const java = require('js-to-java');

const opts = args(process.argv.slice(2));
const name = String(opts.name || 'server');

const text = req => {
  const a = req.data.args[0];
  if (a == null) return '';
  if (typeof a === 'object' && 'text' in a) return a.text;
  return String(a);
};
const delayOf = req => {
  const a = req.data.args;
  if (a[0] && typeof a[0] === 'object' && 'delay_ms' in a[0]) return Number(a[0].delay_ms || a[0].delayMs || 0);
  if (a[0] && typeof a[0] === 'object' && 'delayMs' in a[0]) return Number(a[0].delayMs || 0);
  return Number(a[1] || opts.delay || 0);
};

const server = net.createServer(socket => {
  const options = { sentReqs: new Map(), proto };
  const encoder = bolt.encoder(options);
  const decoder = bolt.decoder(options);
  pump(encoder, socket, decoder, () => {});
  socket.on('error', () => {});

  const reply = (req, value) => {
    const appResponse = req.options.codecType === 'protobuf' ? { text: value } : java.String(value);
    encoder.writeResponse(req, { isError: false, appResponse }, err => {
      if (err) emit({ event: 'write_error', error: String(err) });
    });
  };

  decoder.on('request', req => {
    const method = req.data.methodName;
    emit({
      event: 'request',
      name,
      id: req.packetId,
      service: req.data.serverSignature,
      method,
      codec: req.options.codecType,
      className: req.className,
      args: req.data.args.map(a => (a && typeof a === 'object' && 'text' in a ? a.text : a)),
    });
    switch (method) {
      case 'echo':
        return reply(req, `${name}:${text(req)}`);
      case 'upper':
        return reply(req, `${name}:${text(req).toUpperCase()}`);
      case 'slow':
        return setTimeout(() => reply(req, `${name}:${text(req)}`), delayOf(req));
      case 'fail':
        return encoder.writeResponse(req, { isError: true, errorMsg: `${name}: failed on purpose` });
      case 'hang':
      case 'notify':
        return undefined;
      default:
        return encoder.writeResponse(req, { isError: true, errorMsg: `${name}: no method ${method}` });
    }
  });
  decoder.on('heartbeat', hb => {
    emit({ event: 'heartbeat', name, id: hb.packetId });
    encoder.writeHeartbeatAck(hb);
  });
});

server.listen(Number(opts.port || 0), '127.0.0.1', () => {
  emit({ event: 'listening', name, port: server.address().port });
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
