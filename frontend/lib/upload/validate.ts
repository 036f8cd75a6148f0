import {
  ACCEPTED_INPUT_EXTENSIONS,
  ACCEPTED_INPUT_MIME_TYPES,
  type UploadLimits,
} from '@/lib/config';
import { formatBytes } from '@/lib/format';

export interface FileLike {
  name: string;
  size: number;
  type: string;
}

export interface ClientRejection {
  code: 'file_too_large' | 'unsupported_type' | 'empty_file' | 'too_many_files';
  message: string;
}

function extensionOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot >= 0 ? name.slice(dot + 1).toLowerCase() : '';
}

/**
 * The cheap checks a browser can make before sending a file. The API still sniffs the content
 * (a text file named .jpg passes here and is rejected there, with its reason shown per file).
 */
export function checkFile(file: FileLike, limits: UploadLimits): ClientRejection | null {
  if (file.size === 0) return { code: 'empty_file', message: 'The file is empty.' };
  if (file.size > limits.maxFileBytes) {
    return {
      code: 'file_too_large',
      message: `${formatBytes(file.size)} is over the ${formatBytes(limits.maxFileBytes)} limit.`,
    };
  }
  const mimeOk = (ACCEPTED_INPUT_MIME_TYPES as readonly string[]).includes(file.type);
  const extensionOk = (ACCEPTED_INPUT_EXTENSIONS as readonly string[]).includes(
    extensionOf(file.name),
  );
  // Browsers report no type for HEIC and some TIFFs, and image/* for odd formats: either the
  // type or the extension has to look like an image we convert.
  if (!mimeOk && !extensionOk) {
    return {
      code: 'unsupported_type',
      message: 'Not a supported image type (JPEG, PNG, WebP, GIF, BMP, TIFF, AVIF or HEIC).',
    };
  }
  return null;
}

export interface CheckedBatch<T extends FileLike> {
  accepted: T[];
  rejected: { file: T; problem: ClientRejection }[];
}

/**
 * Check a batch of picked files. At most `limits.maxFiles` can be waiting or uploading at once
 * (`alreadyQueued` counts those); the files beyond that are rejected, not silently dropped.
 */
export function checkBatch<T extends FileLike>(
  files: readonly T[],
  limits: UploadLimits,
  alreadyQueued = 0,
): CheckedBatch<T> {
  const accepted: T[] = [];
  const rejected: { file: T; problem: ClientRejection }[] = [];
  for (const file of files) {
    const problem = checkFile(file, limits);
    if (problem) {
      rejected.push({ file, problem });
    } else if (alreadyQueued + accepted.length >= limits.maxFiles) {
      rejected.push({
        file,
        problem: {
          code: 'too_many_files',
          message: `At most ${limits.maxFiles} files per upload. Convert these first, then add more.`,
        },
      });
    } else {
      accepted.push(file);
    }
  }
  return { accepted, rejected };
}
