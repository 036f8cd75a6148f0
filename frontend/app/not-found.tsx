import Link from 'next/link';

export default function NotFound() {
  return (
    <div className="flex flex-col items-start gap-2">
      <h1 className="text-lg font-semibold">Page not found</h1>
      <Link href="/" className="text-primary underline-offset-4 hover:underline">
        Back to converting
      </Link>
    </div>
  );
}
