import type { NextRequest } from 'next/server';

import { proxyToApi } from '@/lib/api-proxy';

// Forwards /api/* to the API (see lib/api-proxy.ts). In Kubernetes the chart's Ingress or
// HTTPRoute (Gateway API) sends /api to the API directly and this route is not reached there;
// it is reached with neither (`kubectl port-forward` to the frontend Service, as the chart's
// NOTES suggest: the chart sets IMGCONV_API_URL to the API Service), and outside Kubernetes.
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
