import type { NextRequest } from 'next/server';

import { proxyToApi } from '@/lib/api-proxy';

// Forwards /api/* to the API (see lib/api-proxy.ts). In Kubernetes the Ingress sends /api to
// the API directly and this route is never reached.
export const runtime = 'nodejs';
export const dynamic = 'force-dynamic';

function handle(request: NextRequest): Promise<Response> {
  return proxyToApi(request, { clientIp: request.ip ?? null });
}

export {
  handle as GET,
  handle as POST,
  handle as PUT,
  handle as PATCH,
  handle as DELETE,
  handle as HEAD,
  handle as OPTIONS,
};
