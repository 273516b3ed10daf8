#!/bin/sh
# Makes the spoken prompts: the menus' assets/prompts/NAME.wav from assets/prompts/prompts.txt,
# and subscriber access's words assets/prompts/access/NAME.wav from assets/prompts/access.txt
# (NAME|TEXT a line): espeak-ng speaks each text, sox converts it to 8 kHz mono (the rate of the
# calls' G.711). The WAVs are committed; run this again after changing a list, and commit the
# result (the same list gives the same bytes).
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
# make LIST OUTDIR SOX_ENCODING...: one WAV per NAME|TEXT line of LIST.
make() {
    list=$1 out=$2
    shift 2
    mkdir -p "$out"
    grep -v '^#' "$list" | grep -v '^$' | while IFS='|' read -r name text; do
        espeak-ng -v "$voice" -s "$speed" -w "$tmp/$name.wav" "$text"
        # 8 kHz mono, no dither (the same bytes each run); trim the leading and trailing
        # silence espeak-ng adds; normalise to -3 dBFS.
        sox "$tmp/$name.wav" -D -r 8000 -c 1 "$@" "$out/$name.wav" \
            silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse norm -3
        echo "$out/$name.wav: $text"
    done
}
# The menus' prompts (src/telephony/prompts.rs): 16-bit PCM.
make "$dir/prompts.txt" "$dir" -b 16 -e signed-integer
# The words of subscriber access (src/subscriber/speech.rs): µ-law, half the size.
make "$dir/access.txt" "$dir/access" -e u-law -b 8
