#!/bin/sh
# Makes the spoken prompts of the telephone menus, assets/prompts/NAME.wav, from the list in
# assets/prompts/prompts.txt (NAME|TEXT a line): espeak-ng speaks each text, sox converts it to
# 8 kHz mono 16-bit PCM (the rate of the calls' G.711). The WAVs are committed; run this again
# after changing the list, and commit the result.
#
# Needs: espeak-ng and sox (Debian: apt-get install espeak-ng sox). Not needed by the tests.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
dir="$here/assets/prompts"
voice=${VOICE:-en-us}
speed=${SPEED:-165}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || { echo "$0: $tool is missing (apt-get install espeak-ng sox)" >&2; exit 1; }
done
grep -v '^#' "$dir/prompts.txt" | grep -v '^$' | while IFS='|' read -r name text; do
    espeak-ng -v "$voice" -s "$speed" -w "$tmp/$name.wav" "$text"
    # 8 kHz mono 16-bit, no dither (the same bytes each run); trim the leading and trailing silence espeak-ng adds; normalise to -3 dBFS.
    sox "$tmp/$name.wav" -D -r 8000 -c 1 -b 16 -e signed-integer "$dir/$name.wav" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse norm -3
    echo "$name.wav: $text"
done
