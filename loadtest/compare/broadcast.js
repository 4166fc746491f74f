#!/usr/bin/env node
// A broadcast relay on Node's ws (Debian's node-ws), the fan-out baseline for gavel-load --broadcast: every text
// message from one connection goes to every other open connection, as in ws's README broadcast example. The
// message is received (and its UTF-8 checked) once and the same Buffer is handed to every client's send; ws adds
// a frame header per client and writes the payload without copying it.
//
//     NODE_PATH=/usr/share/nodejs node loadtest/compare/broadcast.js --port 8090
//     loadtest/.build/release/gavel-load --url ws://127.0.0.1:8090/ws --broadcast --preset hot --rate 30
'use strict';

let WebSocketServer;
try {
  ({ WebSocketServer } = require('ws'));
} catch (e) {
  ({ WebSocketServer } = require('/usr/share/nodejs/ws'));
}
const OPEN = 1;

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const port = Number(option('--port', '8090'));
const host = option('--host', '127.0.0.1');
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error('--port must be 1...65535');
  process.exit(2);
}

const wss = new WebSocketServer({ host, port, perMessageDeflate: false, clientTracking: true });
wss.on('connection', (socket) => {
  socket.on('message', (data, isBinary) => {
    for (const client of wss.clients) {
      if (client !== socket && client.readyState === OPEN) client.send(data, { binary: isBinary });
    }
  });
  socket.on('error', () => {});
});
wss.on('listening', () => console.error(`broadcast relay on ws://${host}:${port}/`));
const stop = () => wss.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
