#!/usr/bin/env node
// A UM web service that is not umws: node-soap (npm `soap`) serving schemas/um.wsdl, for
// tests/interop_node.rs, which calls it through the generated typed client.
//
//     node tests/interop/node_soap_server.js WSDL USER PASSWORD
//
// `soap` is found through NODE_PATH (the test installs it under target/ from
// tests/interop/node/package-lock.json). Listens on 127.0.0.1 at a free port and prints
// `listening http://127.0.0.1:PORT/UnifiedMessaging/Service.asmx` once it serves; runs until
// killed or until its standard input closes (so it does not outlive the test).
//
// The answers are fixed and known to the test, so that it can check every decoded value:
// the mailbox starts with the settings in `settings` below; the Set operations change them
// (so the test also sees that node-soap read what the client sent); PlayOnPhone and
// PlayOnPhoneGreeting answer fixed call ids; GetCallInfo answers a state per call id; an
// unknown call id, and any request without `Authorization: Basic base64(USER:PASSWORD)`,
// get a SOAP fault written by node-soap.
'use strict';

const fs = require('fs');
const http = require('http');
const soap = require('soap');

const [wsdlPath, user, password] = process.argv.slice(2);
if (!wsdlPath || user === undefined || password === undefined) {
  process.stderr.write('usage: node_soap_server.js WSDL USER PASSWORD\n');
  process.exit(2);
}
const expectedAuth = 'Basic ' + Buffer.from(`${user}:${password}`, 'utf8').toString('base64');
const PATH = '/UnifiedMessaging/Service.asmx';
const ERRORS_NS = 'http://schemas.microsoft.com/exchange/services/2006/errors';

// The call ids answered by PlayOnPhone and PlayOnPhoneGreeting, and each call's state.
const PLAY_ON_PHONE_CALL = 'Y2FsbC0xQG5vZGUtc29hcC5leGFtcGxlLm9yZw==';
const GREETING_CALL = 'Y2FsbC0yQG5vZGUtc29hcC5leGFtcGxlLm9yZw==';
const calls = {
  [PLAY_ON_PHONE_CALL]: { CallState: 'Connected', EventCause: 'None' },
  [GREETING_CALL]: { CallState: 'Disconnected', EventCause: 'NoAnswer' },
};

const settings = {
  OofStatus: false,
  MissedCallNotificationEnabled: true,
  PlayOnPhoneDialString: '+1 (425) 555-0100 <ext. 7> & "main"',
  TelephoneAccessNumbers: '+1 425 555 0199, +49 30 1234 5678',
  TelephoneAccessFolderEmail: 'AAECAwQFBgc=',
};

// A fault as node-soap writes it (HTTP 500): `faultcode` is `soap:Client`, or an application
// code `a:NAME` with `a` declared on the faultcode element itself (umws declares it on the
// envelope), and the detail holds `<ExceptionType>NAME</ExceptionType>`.
function fault(code, message) {
  const local = code.replace(/^.*:/, '');
  const faultcode = code.startsWith('a:')
    ? { attributes: { 'xmlns:a': ERRORS_NS }, $value: code }
    : code;
  return {
    Fault: {
      faultcode,
      faultstring: message,
      detail: { ExceptionType: local },
      statusCode: 500,
    },
  };
}

function authorized(req) {
  if (!req || req.headers.authorization !== expectedAuth) {
    throw fault('soap:Client', 'The request was not authenticated as the test user.');
  }
}

function bool(value) {
  return value === true || value === 'true' || value === '1';
}

const handlers = {
  IsUMEnabled() {
    return { IsUMEnabledResponse: true };
  },
  GetUMProperties() {
    return { GetUMPropertiesResponse: { ...settings } };
  },
  SetOofStatus(args) {
    settings.OofStatus = bool(args.status);
    return {};
  },
  SetPlayOnPhoneDialString(args) {
    settings.PlayOnPhoneDialString = args.dialString;
    return {};
  },
  SetTelephoneAccessFolderEmail(args) {
    settings.TelephoneAccessFolderEmail = args.base64FolderId;
    return {};
  },
  SetMissedCallNotificationEnabled(args) {
    settings.MissedCallNotificationEnabled = bool(args.status);
    return {};
  },
  ResetPIN() {
    return {};
  },
  PlayOnPhone() {
    return { PlayOnPhoneResponse: PLAY_ON_PHONE_CALL };
  },
  PlayOnPhoneGreeting() {
    return { PlayOnPhoneGreetingResponse: GREETING_CALL };
  },
  GetCallInfo(args) {
    const call = calls[args.CallId];
    if (!call) {
      throw fault('a:InvalidCallIdException', 'The call id is not known.');
    }
    return { GetCallInfoResponse: { ...call } };
  },
  Disconnect(args) {
    if (!calls[args.CallId]) {
      throw fault('a:InvalidCallIdException', 'The call id is not known.');
    }
    calls[args.CallId] = { CallState: 'Disconnected', EventCause: 'None' };
    return {};
  },
};

const port = {};
for (const [name, handler] of Object.entries(handlers)) {
  port[name] = (args, callback, headers, req) => {
    authorized(req);
    return handler(args || {});
  };
}
const services = { UMService: { UMServiceSoap: port } };

const server = http.createServer((req, res) => {
  res.statusCode = 404;
  res.end();
});
server.listen(0, '127.0.0.1', () => {
  const xml = fs.readFileSync(wsdlPath, 'utf8');
  const callback = (err) => {
    if (err) {
      process.stderr.write(`node-soap cannot load ${wsdlPath}: ${err.stack || err}\n`);
      process.exit(1);
    }
    const { port: bound } = server.address();
    process.stdout.write(`listening http://127.0.0.1:${bound}${PATH}\n`);
  };
  const soapServer = soap.listen(server, { path: PATH, services, xml, uri: wsdlPath, callback });
  soapServer.log = (type, data) => {
    if (type === 'error') process.stderr.write(`node-soap: ${data}\n`);
  };
});

// Stop when the test that started this server goes away (its end of stdin closes).
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
