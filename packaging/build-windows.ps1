# Windows: builds dist\uplink-console\ (uplink-console.exe, the window without a console, and
# uplink-console-cli.exe, the same program as a console executable for the headless commands),
# then the installer dist\uplink-console-VERSION-windows-x64-setup.exe with Inno Setup 6, and
# checks both: packaging/smoke-test.sh on the folder, then a silent per-user install into a
# temporary folder, the same smoke test on the installed copy, and a silent uninstall.
#
#   pwsh -File packaging\build-windows.ps1 [-Python C:\path\python.exe] [-SkipSmokeTest]
#
# PowerShell 7.3 or later (pwsh): it passes the quoted signtool command line to ISCC intact.
# Needs: Python 3.12 (default: .venv, made with the py launcher when missing), Inno Setup 6
# (ISCC.exe; installed with Chocolatey when missing), Git for Windows (its bash runs the smoke test).
# Signing hook (skipped when unset): WINDOWS_SIGN_CERT_FILE (a .pfx) and WINDOWS_SIGN_CERT_PASSWORD;
# WINDOWS_SIGN_TIMESTAMP_URL (default http://timestamp.digicert.com); WINDOWS_SIGNTOOL (default: the
# newest signtool.exe of the Windows SDK). Both executables, the installer and its uninstaller are signed.
param(
    [string]$Python = "",
    [switch]$SkipSmokeTest
)
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..")

function Invoke-Native {
    # Runs a program and stops the build, saying which, when it fails.
    param([string]$Program, [string[]]$Arguments)
    & $Program @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$Program $($Arguments -join ' ') exited $LASTEXITCODE" }
}

$started = Get-Date
if (-not $Python) {
    $Python = ".venv\Scripts\python.exe"
    if (-not (Test-Path $Python)) { Invoke-Native "py" @("-3.12", "-m", "venv", ".venv") }
    Invoke-Native $Python @("-m", "pip", "install", "-q", "--upgrade", "pip")
    Invoke-Native $Python @("-m", "pip", "install", "-q", "-e", ".")
}
Invoke-Native $Python @("-m", "pip", "install", "-q", "pyinstaller>=6.10")
if (Test-Path "dist\uplink-console") { Remove-Item -Recurse -Force "dist\uplink-console" }
Invoke-Native $Python @("-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
    "--distpath", "dist", "--workpath", "build\pyinstaller", "packaging\uplink-console.spec")
$version = (& $Python packaging\version.py).Trim()
if ($LASTEXITCODE -ne 0 -or -not $version) { throw "packaging\version.py found no installed uplink-console" }
foreach ($exe in @("uplink-console.exe", "uplink-console-cli.exe")) {
    if (-not (Test-Path "dist\uplink-console\$exe")) { throw "the build made no dist\uplink-console\$exe" }
}

# Signing (skipped without a certificate).
$signCert = $env:WINDOWS_SIGN_CERT_FILE
$signArgs = @()
if ($signCert) {
    $signtool = $env:WINDOWS_SIGNTOOL
    if (-not $signtool) {
        $signtool = Get-ChildItem "${env:ProgramFiles(x86)}\Windows Kits\10\bin\*\x64\signtool.exe" |
            Sort-Object FullName -Descending | Select-Object -First 1 -ExpandProperty FullName
    }
    if (-not $signtool) { throw "WINDOWS_SIGN_CERT_FILE is set but no signtool.exe was found; set WINDOWS_SIGNTOOL" }
    $timestamp = if ($env:WINDOWS_SIGN_TIMESTAMP_URL) { $env:WINDOWS_SIGN_TIMESTAMP_URL } else { "http://timestamp.digicert.com" }
    $signArgs = @("sign", "/f", $signCert, "/p", $env:WINDOWS_SIGN_CERT_PASSWORD, "/fd", "sha256", "/tr", $timestamp, "/td", "sha256")
    Invoke-Native $signtool ($signArgs + @("dist\uplink-console\uplink-console.exe", "dist\uplink-console\uplink-console-cli.exe"))
} else {
    Write-Host "not signed (set WINDOWS_SIGN_CERT_FILE and WINDOWS_SIGN_CERT_PASSWORD to sign)"
}

# The installer.
$iscc = $env:ISCC
if (-not $iscc) { $iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" }
if (-not (Test-Path $iscc)) {
    Invoke-Native "choco" @("install", "innosetup", "-y", "--no-progress")
    $iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe"
}
$isccArgs = @("/Qp", "/DAppVersion=$version")
if ($signCert) {
    $quoted = ($signArgs | ForEach-Object { if ($_ -match '\s') { "`"$_`"" } else { $_ } }) -join " "
    $isccArgs += @("/DSignTool=signtool", "/Ssigntool=`"$signtool`" $quoted `$f")
}
Invoke-Native $iscc ($isccArgs + @("packaging\windows\uplink-console.iss"))
$setup = "dist\uplink-console-$version-windows-x64-setup.exe"
if (-not (Test-Path $setup)) { throw "Inno Setup made no $setup" }
$built = Get-Date

if (-not $SkipSmokeTest) {
    # Git for Windows' bash (not WSL's bash.exe, which may come first on PATH).
    $git = (Get-Command git -ErrorAction Stop).Source
    $bash = Join-Path (Split-Path (Split-Path $git)) "bin\bash.exe"
    if (-not (Test-Path $bash)) { $bash = "bash" }
    $env:EXPECTED_VERSION = $version
    Invoke-Native $bash @("packaging/smoke-test.sh", "dist/uplink-console/uplink-console-cli.exe")

    $target = Join-Path ([System.IO.Path]::GetTempPath()) "uplink-console-smoke-$PID"
    # Start-Process resolves a relative path against the process's folder, not Set-Location's.
    $install = Start-Process -Wait -PassThru -FilePath (Resolve-Path $setup).Path -ArgumentList @(
        "/VERYSILENT", "/SUPPRESSMSGBOXES", "/NORESTART", "/CURRENTUSER", "/DIR=`"$target`"", "/LOG=`"$target.log`"")
    if ($install.ExitCode -ne 0) { Get-Content "$target.log" -Tail 40; throw "the installer exited $($install.ExitCode)" }
    foreach ($exe in @("uplink-console.exe", "uplink-console-cli.exe")) {
        if (-not (Test-Path "$target\$exe")) { throw "the installer put no $exe in $target" }
    }
    $installedCli = ($target -replace '\\', '/') + "/uplink-console-cli.exe"
    Invoke-Native $bash @("packaging/smoke-test.sh", $installedCli)
    $uninstall = Start-Process -Wait -PassThru -FilePath "$target\unins000.exe" -ArgumentList @("/VERYSILENT", "/SUPPRESSMSGBOXES", "/NORESTART")
    if ($uninstall.ExitCode -ne 0) { throw "the uninstaller exited $($uninstall.ExitCode)" }
}

$size = "{0:N1} MB" -f ((Get-Item $setup).Length / 1MB)
Write-Host "uplink-console ${version}: $setup $size, built in $([int]($built - $started).TotalSeconds) s"
