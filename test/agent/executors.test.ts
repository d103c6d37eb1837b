import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ExecExecutor } from '../../src/agent/executors/exec.js';
import { HttpExecutor } from '../../src/agent/executors/http.js';
import { MqttAckRouter } from '../../src/agent/executors/mqtt.js';

const request = { commandId: 'aa01', action: 'move', principal: 'Agent::"planner"', resource: 'Arm::"arm-01"', args: { speed: 10 } };
const node = process.execPath;

describe('ExecExecutor', () => {
  it('passes the request as JSON on stdin without a shell and returns its JSON output', async () => {
    const script = 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s);console.log(JSON.stringify({moved:r.args.speed,env:Object.keys(process.env).sort()}))})';
    const outcome = await new ExecExecutor([node, '-e', script], 5000).execute(request);
    expect(outcome).toEqual({ status: 'ok', detail: { moved: 10, env: ['PATH'] } });
  });

  it('treats shell syntax in arguments literally', async () => {
    const outcome = await new ExecExecutor([node, '-e', 'console.log(JSON.stringify(process.argv.slice(1)))', '$(touch /tmp/x); rm -rf /'], 5000).execute(request);
    expect(outcome).toEqual({ status: 'ok', detail: ['$(touch /tmp/x); rm -rf /'] });
  });

  it('reports a non-zero exit with stderr, a missing program, and kills on timeout', async () => {
    expect(await new ExecExecutor([node, '-e', 'console.error("jammed");process.exit(3)'], 5000).execute(request)).toEqual({
      status: 'failed', code: 'EXEC_NONZERO_EXIT', message: 'exited with code 3: jammed',
    });
    expect(await new ExecExecutor(['/nonexistent/program'], 5000).execute(request)).toMatchObject({ status: 'failed', code: 'EXEC_SPAWN_FAILED' });
    const t = await new ExecExecutor([node, '-e', 'setTimeout(()=>{}, 60000)'], 200).execute(request);
    expect(t.status).toBe('timeout');
  });
});

describe('HttpExecutor', () => {
  it('POSTs the request and maps status codes and timeouts', async () => {
    const seen: unknown[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d)).on('end', () => {
        seen.push(JSON.parse(body));
        if (req.url === '/ok') res.end(JSON.stringify({ done: true }));
        else if (req.url === '/slow') setTimeout(() => res.end('late'), 2000);
        else { res.statusCode = 503; res.end('busy'); }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      expect(await new HttpExecutor(`${base}/ok`, 2000).execute(request)).toEqual({ status: 'ok', detail: { done: true } });
      expect(seen[0]).toEqual(request);
      expect(await new HttpExecutor(`${base}/busy`, 2000).execute(request)).toMatchObject({ status: 'failed', code: 'EXEC_HTTP_STATUS' });
      expect((await new HttpExecutor(`${base}/slow`, 200).execute(request)).status).toBe('timeout');
      expect(await new HttpExecutor('http://127.0.0.1:1/x', 2000).execute(request)).toMatchObject({ status: 'failed', code: 'EXEC_HTTP_UNREACHABLE' });
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('MqttAckRouter', () => {
  const id = 'ab'.repeat(32);
  const ack = (body: unknown) => Buffer.from(JSON.stringify(body));

  it('settles a waiting command only with its exact id on its own action\'s ack topic', async () => {
    const router = new MqttAckRouter();
    const waiting = router.wait(id, 'move', 5000);
    expect(router.deliver('move', ack({ id: id.toUpperCase(), status: 'ok' })).verdict).toBe('EXEC_ACK_MALFORMED');
    expect(router.deliver('move', ack({ id: id.slice(0, 32), status: 'ok' })).verdict).toBe('EXEC_ACK_MALFORMED');
    expect(router.deliver('grip', ack({ id, status: 'ok' })).verdict).toBe('EXEC_ACK_WRONG_ACTION');
    expect(router.deliver('move', ack({ id, status: 'done' })).verdict).toBe('EXEC_ACK_MALFORMED');
    expect(router.deliver('move', Buffer.from('not json')).verdict).toBe('EXEC_ACK_MALFORMED');
    expect(router.pending).toBe(1);
    expect(router.deliver('move', ack({ id, status: 'ok', detail: { x: 1 } }))).toEqual({ verdict: 'ACCEPTED', id });
    expect(await waiting.promise).toEqual({ status: 'ok', detail: { x: 1 } });
    expect(router.deliver('move', ack({ id, status: 'ok' })).verdict).toBe('EXEC_ACK_DUPLICATE');
    expect(router.deliver('move', ack({ id: 'cd'.repeat(32), status: 'ok' })).verdict).toBe('EXEC_ACK_UNKNOWN');
  });

  it('treats an ack after the timeout as a duplicate, not a new answer', async () => {
    const router = new MqttAckRouter();
    expect((await router.wait(id, 'move', 10).promise).status).toBe('timeout');
    expect(router.deliver('move', ack({ id, status: 'ok' })).verdict).toBe('EXEC_ACK_DUPLICATE');
  });
});
