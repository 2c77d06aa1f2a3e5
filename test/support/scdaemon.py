#!/usr/bin/env python3
# A stand-in for scdaemon, for tests that need gpg-agent to pass a card daemon's INQUIRE through to its client:
# it answers every command with OK, and LEARN (without --force) with a serial number status line and the inquiry
# scdaemon makes there, KNOWNCARDP, whose answer it reads up to END or CAN before its OK.
import sys


def send(line):
    sys.stdout.write(line + '\n')
    sys.stdout.flush()


SERIAL = 'D2760001240102000005000012340000'
send('OK scdaemon stand-in')
for raw in sys.stdin:
    line = raw.rstrip('\n')
    command = line.split(' ', 1)[0].upper()
    if command == 'LEARN' and '--force' not in line:
        send('S SERIALNO ' + SERIAL)
        send('INQUIRE KNOWNCARDP ' + SERIAL + ' 0')
        for answer in sys.stdin:
            if answer[:3].upper() in ('END', 'CAN'):
                break
        send('OK')
    elif command == 'BYE':
        send('OK closing connection')
        break
    elif command == 'GETINFO' and 'socket_name' in line:
        send('ERR 67108891 Not found <SCD>')
    else:
        send('OK')
