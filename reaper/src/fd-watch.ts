/**
 * A one-shot change watch on a file descriptor the caller holds (Linux: inotify).
 *
 * The watch is placed through `/proc/self/fd/N`, which the kernel resolves to the file the
 * descriptor refers to, not to whatever its name points at now: a worker that renames its log,
 * or puts a symlink or a FIFO at its name, cannot move the watch off the file its processes write.
 * It fires once (the first write, truncation or attribute change after it was placed) and closes
 * itself, so a process writing at full speed costs its watcher one event, not one per write: the
 * caller polls while the file changes and places a new watch once it is quiet.
 */
import { watch, type FSWatcher } from 'node:fs';
import { IS_LINUX } from './platform.js';

export interface FdWatch {
  /** Remove the watch (idempotent); `onChange` is not called after it. */
  close(): void;
}

/**
 * Watch descriptor `fd` for its first change: `onChange` is called once, on the next write (or
 * truncation, attribute change) of its file by any process, or when the watch fails after it was
 * placed (the caller then looks at the file as it would after a change). Null when no watch can be
 * placed (not Linux, the inotify limits reached, ...): the caller polls instead.
 */
export function watchFd(fd: number, onChange: () => void): FdWatch | null {
  if (!IS_LINUX) return null;
  let w: FSWatcher;
  let done = false;
  const fire = () => {
    if (done) return;
    done = true;
    try {
      w.close();
    } catch {
      /* closed already */
    }
    onChange();
  };
  try {
    w = watch(`/proc/self/fd/${fd}`, { persistent: false }, fire);
  } catch {
    return null;
  }
  w.on('error', fire);
  return {
    close: () => {
      if (done) return;
      done = true;
      try {
        w.close();
      } catch {
        /* closed already */
      }
    },
  };
}
