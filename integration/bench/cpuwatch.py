#!/usr/bin/env python3
# For each runclient run, the CPU time (user+sys) each process used while it ran,
# processes that started or exited in that time included (last sample, <= 0.4 s stale).
import os, time
HZ = os.sysconf('SC_CLK_TCK')
def snap():
    d = {}
    for p in os.listdir('/proc'):
        if not p.isdigit(): continue
        try:
            st = open(f'/proc/{p}/stat').read()
            cmd = open(f'/proc/{p}/cmdline','rb').read().replace(b'\0',b' ').decode()[:110]
        except OSError: continue
        f = st[st.rindex(')')+2:].split()
        d[int(p)] = (int(f[11])+int(f[12]), cmd)
    return d
seen, active, last, born = set(), {}, {}, {}
n = 0
while True:
    s = snap(); n += 1
    for q,v in s.items():
        if q not in last: born[q] = n
        last[q] = v
    for pid,(t,cmd) in s.items():
        if 'runclient -mode' in cmd and not cmd.split()[0].endswith('tether') and pid not in seen and '-mode idle' not in cmd and '-mode dns' not in cmd:
            seen.add(pid); active[pid] = (s, cmd, time.time(), n)
    for pid in list(active):
        if pid in s: continue
        s0, cmd, t0, n0 = active.pop(pid)
        rows = []
        for q,(t,c) in last.items():
            if q in s0 and s0[q][1] == c: dt = t - s0[q][0]
            elif born[q] >= n0 - 1: dt = t
            else: continue
            if dt > 0: rows.append((dt, q, c + ('' if q in s else ' [exited]')))
        print(f'\n### {cmd}  ({time.time()-t0:.1f}s wall)', flush=True)
        for dt,q,c in sorted(rows, reverse=True)[:12]:
            print(f'  {dt*1000//HZ:6d} ms  {q:7d} {c}', flush=True)
    time.sleep(0.4)
