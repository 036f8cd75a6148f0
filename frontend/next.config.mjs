/**
 * The browser always calls the API on the same origin under /api. In Kubernetes the Ingress
 * routes /api to the API service. Everywhere else (next dev, next start, the standalone server)
 * app/api/[...path]/route.ts forwards /api to IMGCONV_API_URL, read on every request.
 *
 * Not `rewrites()`: in production Next.js reads rewrites from .next/routes-manifest.json,
 * written by `next build`, so their destination would be whatever the env said at build time.
 */
/** @type {import('next').NextConfig} */
const nextConfig = {
  output: 'standalone',
  reactStrictMode: true,
  poweredByHeader: false,
  async headers() {
    return [
      {
        source: '/:path*',
        headers: [
          { key: 'X-Content-Type-Options', value: 'nosniff' },
          { key: 'Referrer-Policy', value: 'same-origin' },
          { key: 'X-Frame-Options', value: 'DENY' },
        ],
      },
    ];
  },
};

export default nextConfig;
