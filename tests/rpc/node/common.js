'use strict';
// Shared by server.js and client.js: command-line flags, the hessian 2 switch, the protobuf
// schema, and a small wrapper that exposes the Bolt response status sofa-bolt-node reads.

const path = require('path');
const bolt = require('sofa-bolt-node');
const protobuf = require('protobufjs');

// sofa-bolt-node defaults to the old hessian object encoding ("3.0"); "4.0" is hessian 2 as
// SOFARPC Java writes it, so the payloads are those of a different implementation.
bolt.setOptions({ hessianVersion: '4.0' });

exports.bolt = bolt;

exports.proto = protobuf.loadSync(path.join(__dirname, 'proto', 'echo.proto'));

// `--name value` / `--flag` parsing into an object.
exports.args = argv => {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const key = a.slice(2);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) {
      out[key] = true;
    } else {
      out[key] = next;
      i++;
    }
  }
  return out;
};

// sofa-bolt-node decodes the response status but keeps only an Error for non-success
// statuses; keep the status number too (read through the library's own buffer, then rewound)
// so the tests can check which Bolt status tern answered with.
const RpcResponseCommand = require('sofa-bolt-node/lib/protocol/rpc_res_cmd');
const decode = RpcResponseCommand.decode;
RpcResponseCommand.decode = (byteBuffer, ctx) => {
  const at = byteBuffer.position();
  const status = byteBuffer.getShort();
  byteBuffer.position(at);
  const ret = decode(byteBuffer, ctx);
  if (ret && ret.data) ret.data.status = status;
  return ret;
};

exports.emit = obj => process.stdout.write(JSON.stringify(obj) + '\n');
