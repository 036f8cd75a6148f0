/**
 * Same-origin access to the API wherever no Ingress or HTTPRoute sends /api to it: local runs,
 * and a cluster reached by `kubectl port-forward` to the frontend Service. Forwards /api/* to
 * IMGCONV_API_URL, read on every request (so the standalone server follows the environment it
 * runs in, not the one it was built in). Bodies are streamed both ways.
 */

export const DEFAULT_API_URL = 'http://127.0.0.1:8000';

// Hop-by-hop headers (RFC 9110 7.6.1) and ones fetch sets itself.
const DROP_REQUEST = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'host',
  'accept-encoding',
]);
const DROP_RESPONSE = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'trailer',
  'upgrade',
  // fetch already decoded the body, so its encoding and length no longer apply.
  'content-encoding',
  'content-length',
]);

export function apiBaseUrl(env: Record<string, string | undefined> = process.env): string {
  const raw = env.IMGCONV_API_URL?.trim() || DEFAULT_API_URL;
  return raw.replace(/\/+$/, '');
}

export function upstreamUrl(requestUrl: string, base: string): string {
  const url = new URL(requestUrl);
  return `${base}${url.pathname}${url.search}`;
}

export function forwardRequestHeaders(
  incoming: Headers,
  clientIp: string | null,
  host: string | null = incoming.get('host'),
): Headers {
  const headers = new Headers();
  incoming.forEach((value, key) => {
    if (!DROP_REQUEST.has(key.toLowerCase())) headers.set(key, value);
  });
  if (host) headers.set('X-Forwarded-Host', host);
  if (clientIp) {
    const prior = incoming.get('x-forwarded-for');
    headers.set('X-Forwarded-For', prior ? `${prior}, ${clientIp}` : clientIp);
  }
  return headers;
}

export function forwardResponseHeaders(upstream: Headers): Headers {
  const headers = new Headers();
  upstream.forEach((value, key) => {
    if (!DROP_RESPONSE.has(key.toLowerCase())) headers.append(key, value);
  });
  return headers;
}

function unreachable(): Response {
  return Response.json(
    {
      error: {
        code: 'api_unreachable',
        message: 'The API is not reachable right now. Try again in a moment.',
        details: null,
      },
    },
    { status: 502 },
  );
}

export async function proxyToApi(
  request: Request,
  { base = apiBaseUrl(), clientIp = null, fetchImpl = fetch }: {
    base?: string;
    clientIp?: string | null;
    fetchImpl?: typeof fetch;
  } = {},
): Promise<Response> {
  const hasBody = request.method !== 'GET' && request.method !== 'HEAD' && request.body !== null;
  const init: RequestInit & { duplex?: 'half' } = {
    method: request.method,
    headers: forwardRequestHeaders(
      request.headers,
      clientIp,
      request.headers.get('host') ?? new URL(request.url).host,
    ),
    body: hasBody ? request.body : undefined,
    redirect: 'manual',
    signal: request.signal,
    cache: 'no-store',
  };
  if (hasBody) init.duplex = 'half';
  let upstream: Response;
  try {
    upstream = await fetchImpl(upstreamUrl(request.url, base), init);
  } catch (error) {
    if (request.signal.aborted) return new Response(null, { status: 499 });
    console.error(`api proxy: ${request.method} ${new URL(request.url).pathname}:`, error);
    return unreachable();
  }
  const bodyless = upstream.status === 204 || upstream.status === 304 || request.method === 'HEAD';
  return new Response(bodyless ? null : upstream.body, {
    status: upstream.status,
    statusText: upstream.statusText,
    headers: forwardResponseHeaders(upstream.headers),
  });
}
