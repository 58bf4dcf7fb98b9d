#!/bin/sh
# macOS: builds dist/Uplink Console.app (the spec's BUNDLE) and a drag-to-Applications disk image
#   dist/uplink-console-VERSION-macos-ARCH.dmg
# then mounts the image read-only and runs packaging/smoke-test.sh on the program inside it.
#
# Signing hooks (each skipped when unset):
#   MACOS_CODESIGN_IDENTITY   "Developer ID Application: NAME (TEAMID)" in the keychain: the spec
#                             signs the bundle (hardened runtime, packaging/macos/entitlements.plist)
#                             and this script signs the .dmg
#   MACOS_NOTARY_PROFILE      a notarytool keychain profile (xcrun notarytool store-credentials), or
#   MACOS_NOTARY_APPLE_ID + MACOS_NOTARY_TEAM_ID + MACOS_NOTARY_PASSWORD (an app-specific password):
#                             the .dmg is notarized and the ticket stapled to it
# Needs: Xcode command line tools (hdiutil, codesign, xcrun), Python 3.12 (PYTHON, default .venv).
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
PYTHON="$PYTHON" packaging/build.sh
version=$("$PYTHON" packaging/version.py)
app="dist/Uplink Console.app"
[ -x "$app/Contents/MacOS/uplink-console" ] || { echo "BUILD FAILED: $app has no Contents/MacOS/uplink-console" >&2; exit 1; }
plist_version=$(/usr/libexec/PlistBuddy -c "Print :CFBundleShortVersionString" "$app/Contents/Info.plist")
[ "$plist_version" = "$version" ] || { echo "BUILD FAILED: the bundle says $plist_version, the package $version" >&2; exit 1; }
if [ -n "${MACOS_CODESIGN_IDENTITY:-}" ]; then
  codesign --verify --deep --strict --verbose=2 "$app"
fi

dmg="dist/uplink-console-$version-macos-$(uname -m).dmg"
stage=$(mktemp -d)
mnt=$(mktemp -d)
trap 'hdiutil detach -quiet "$mnt" 2>/dev/null || true; rm -rf "$stage"' EXIT
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
rm -f "$dmg"
hdiutil create -quiet -volname "Uplink Console $version" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$dmg"

if [ -n "${MACOS_CODESIGN_IDENTITY:-}" ]; then
  codesign --force --timestamp --sign "$MACOS_CODESIGN_IDENTITY" "$dmg"
fi
if [ -n "${MACOS_NOTARY_PROFILE:-}" ]; then
  xcrun notarytool submit "$dmg" --keychain-profile "$MACOS_NOTARY_PROFILE" --wait
  xcrun stapler staple "$dmg"
elif [ -n "${MACOS_NOTARY_APPLE_ID:-}" ] && [ -n "${MACOS_NOTARY_TEAM_ID:-}" ] && [ -n "${MACOS_NOTARY_PASSWORD:-}" ]; then
  xcrun notarytool submit "$dmg" --apple-id "$MACOS_NOTARY_APPLE_ID" --team-id "$MACOS_NOTARY_TEAM_ID" \
    --password "$MACOS_NOTARY_PASSWORD" --wait
  xcrun stapler staple "$dmg"
else
  echo "not notarized (set MACOS_NOTARY_PROFILE or MACOS_NOTARY_APPLE_ID/TEAM_ID/PASSWORD to notarize)"
fi

echo "== the .dmg, mounted read-only at $mnt"
hdiutil attach -quiet -nobrowse -readonly -mountpoint "$mnt" "$dmg"
EXPECTED_VERSION="$version" packaging/smoke-test.sh "$mnt/Uplink Console.app/Contents/MacOS/uplink-console"
hdiutil detach -quiet "$mnt"
echo "uplink-console $version: $dmg $(du -h "$dmg" | cut -f1), app $(du -sh "$app" | cut -f1)"
