#!/usr/bin/env node
// node-soap (npm `soap`, pinned in package-lock.json) serving schemas/um.wsdl's IsUMEnabled:
// the stock SOAP server from another ecosystem that benches/load.rs measures next to umws
// (target `node`).
//
//     node benches/node_soap/server.js WSDL USER PASSWORD [WORKERS]
//
// `soap` is found through NODE_PATH (the bench installs it under target/bench-node with
// `npm ci`). Listens on 127.0.0.1 at a free port and prints `listening PORT` once node-soap
// serves; runs until killed or until its standard input closes (so that it does not outlive
// the bench). WORKERS (default 1) > 1 runs that many processes with node's `cluster` module
// sharing the port, as a multi-core node deployment does.
//
// The service is written as node-soap's README shows: a handler per operation, the WSDL
// loaded by `soap.listen`, and HTTP Basic checked in node-soap's `authorizeConnection` hook
// against USER and PASSWORD (401 with a challenge otherwise, like umws). One setting may
// differ from node-soap's defaults: with NODE_SOAP_CHUNKED=0 (the bench's default) answers
// carry a Content-Length (`enableChunkedEncoding: false`: one `res.end`, the cheaper of
// node's two ways to answer); with NODE_SOAP_CHUNKED=1 they are chunked, node-soap's default
// (`res.write` then `res.end`).
'use strict';

const cluster = require('cluster');
const fs = require('fs');
const http = require('http');

const [wsdlPath, user, password, workersArg] = process.argv.slice(2);
if (!wsdlPath || user === undefined || password === undefined) {
  process.stderr.write('usage: server.js WSDL USER PASSWORD [WORKERS]\n');
  process.exit(2);
}
const workers = Math.max(1, Number.parseInt(workersArg || '1', 10) || 1);
const PATH = '/UnifiedMessaging/Service.asmx';

// Stop when the bench that started this server goes away (its end of stdin closes).
function exitWithStdin() {
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
}

if (workers > 1 && cluster.isPrimary) {
  // The primary only forks and reports the shared port; the workers serve.
  let port = null;
  let ready = 0;
  for (let i = 0; i < workers; i += 1) {
    const worker = cluster.fork();
    worker.on('message', (message) => {
      if (message && typeof message.listening === 'number') {
        port = message.listening;
        ready += 1;
        if (ready === workers) process.stdout.write(`listening ${port}\n`);
      }
    });
  }
  cluster.on('exit', (worker, code) => {
    process.stderr.write(`node-soap worker ${worker.process.pid} exited (${code})\n`);
    process.exit(1);
  });
  const stop = () => {
    for (const worker of Object.values(cluster.workers)) worker.process.kill();
    process.exit(0);
  };
  process.stdin.resume();
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
} else {
  serve();
}

function serve() {
  const soap = require('soap');
  const expected = 'Basic ' + Buffer.from(`${user}:${password}`, 'utf8').toString('base64');
  const services = {
    UMService: {
      UMServiceSoap: {
        IsUMEnabled() {
          return { IsUMEnabledResponse: true };
        },
      },
    },
  };
  const server = http.createServer((req, res) => {
    res.statusCode = 404;
    res.end();
  });
  server.listen(0, '127.0.0.1', () => {
    const xml = fs.readFileSync(wsdlPath, 'utf8');
    const soapServer = soap.listen(server, {
      path: PATH,
      services,
      xml,
      uri: wsdlPath,
      enableChunkedEncoding: process.env.NODE_SOAP_CHUNKED === '1',
      callback: (err) => {
        if (err) {
          process.stderr.write(`node-soap cannot load ${wsdlPath}: ${err.stack || err}\n`);
          process.exit(1);
        }
        const { port } = server.address();
        if (cluster.isWorker) {
          process.send({ listening: port });
        } else {
          process.stdout.write(`listening ${port}\n`);
        }
      },
    });
    soapServer.authorizeConnection = (req, res) => {
      if (req.headers.authorization === expected) return true;
      res.statusCode = 401;
      res.setHeader('WWW-Authenticate', 'Basic realm="umws"');
      return false;
    };
    // No `soapServer.log`: node-soap then builds no log messages per request (umws's rows run
    // without an access log too). Its errors reach the bench as faults (the `non200` column).
  });
  if (!cluster.isWorker) exitWithStdin();
}
