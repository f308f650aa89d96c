"Fail when `nbdev_export` or `nbdev_clean` would change a tracked file (notebooks are the source)."
import hashlib, subprocess, sys

def tracked_state():
    "A digest of every tracked file's current bytes."
    files = subprocess.run(['git', 'ls-files', '-z'], capture_output=True, check=True).stdout.split(b'\0')
    h = hashlib.sha256()
    for f in filter(None, files):
        try: h.update(f + open(f, 'rb').read())
        except FileNotFoundError: h.update(f + b'<missing>')
    return h.hexdigest()

if __name__ == '__main__':
    from nbdev.doclinks import nbdev_export
    from nbdev.clean import nbdev_clean
    before = tracked_state()
    nbdev_export(); nbdev_clean()
    if tracked_state() != before:
        changed = subprocess.run(['git', 'status', '--short'], capture_output=True, text=True).stdout
        sys.exit(f'nbdev_export / nbdev_clean changed tracked files; run them and commit:\n{changed}')
    print('notebooks and scdtl/ are in step (nbdev_export and nbdev_clean change nothing)')
