import { RecentJobs } from '@/components/jobs/recent-jobs';
import { UploadPanel } from '@/components/upload/upload-panel';

export default function ConvertPage() {
  return (
    <div className="grid items-start gap-6 lg:grid-cols-[minmax(0,400px)_minmax(0,1fr)]">
      <h1 className="sr-only">Convert images</h1>
      <UploadPanel />
      <RecentJobs />
    </div>
  );
}
