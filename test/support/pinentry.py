#!/usr/bin/env python3
# A pinentry for tests: speaks the pinentry Assuan protocol to gpg-agent, records every line it is sent
# (percent escapes decoded) in ./log beside itself, and answers GETPIN as ./answer says: `=PASSPHRASE`, or
# `cancel` (as a person pressing Cancel). CONFIRM is answered as ./confirm says (OK when there is none): `ok`,
# `cancel` (the Cancel button), `notok` (the No button), or `never` (no one answers: it waits for the agent to
# close or kill it). Nothing is shown to anyone.
import os
import re
import sys

here = os.path.dirname(os.path.abspath(__file__))


def send(line):
    sys.stdout.write(line + '\n')
    sys.stdout.flush()


def unescape(text):
    return re.sub(r'%([0-9A-Fa-f]{2})', lambda m: chr(int(m.group(1), 16)), text)


send('OK Pleased to meet you')
with open(os.path.join(here, 'log'), 'a') as log:
    for raw in sys.stdin:
        line = raw.rstrip('\n')
        log.write(unescape(line) + '\n')
        log.flush()
        command = line.split(' ', 1)[0].upper()
        if command == 'GETPIN':
            with open(os.path.join(here, 'answer')) as f:
                answer = f.read()
            if answer.startswith('='):
                send('D ' + answer[1:].replace('%', '%25'))
                send('OK')
            else:
                send('ERR 83886179 Operation cancelled <Pinentry>')
        elif command == 'CONFIRM':
            try:
                with open(os.path.join(here, 'confirm')) as f:
                    verdict = f.read().strip()
            except FileNotFoundError:
                verdict = 'ok'
            if verdict == 'cancel':
                send('ERR 83886179 Operation cancelled <Pinentry>')
            elif verdict == 'notok':
                send('ERR 83886194 Not confirmed <Pinentry>')
            elif verdict == 'never':
                sys.stdin.read()
                break
            else:
                send('OK')
        elif command == 'GETINFO':
            send('D %d' % os.getpid())
            send('OK')
        elif command == 'BYE':
            send('OK closing connection')
            break
        else:
            send('OK')
