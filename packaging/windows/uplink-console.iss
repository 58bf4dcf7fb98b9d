; Inno Setup 6.3+ script (x64compatible): the Windows installer of Uplink Console, made from the PyInstaller folder
; dist\uplink-console\ (packaging\uplink-console.spec). packaging\build-windows.ps1 runs it as
;
;   ISCC.exe /DAppVersion=<packaging\version.py> packaging\windows\uplink-console.iss
;
; and adds /DSignTool=signtool "/Ssigntool=signtool.exe sign … $f" when WINDOWS_SIGN_CERT_FILE is
; set, so the installer and its uninstaller are signed too.
;
; The folder holds two executables of the same program: uplink-console.exe (the window, no
; console) and uplink-console-cli.exe (a console program for the headless commands, whose
; output goes to the terminal it is started from).
;
; Installs per user into %LOCALAPPDATA%\Programs\Uplink Console without asking for
; administrator rights, or for all users into Program Files when run as administrator
; (the installer's first page offers both; /ALLUSERS or /CURRENTUSER choose on the command line).

#ifndef AppVersion
  #error Pass the version from the package metadata: ISCC /DAppVersion=... (packaging\build-windows.ps1 does)
#endif
#define AppName "Uplink Console"
#define ExeName "uplink-console.exe"
#define CliExeName "uplink-console-cli.exe"
#ifndef SourceDir
  #define SourceDir "..\..\dist\uplink-console"
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist"
#endif

[Setup]
; Never change the AppId: Windows finds the installed copy (upgrades, uninstall) by it.
AppId={{6F1B3E2A-4C7D-4B8E-9A51-2D3C4E5F6A7B}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Uplink Console
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog commandline
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=uplink-console-{#AppVersion}-windows-x64-setup
SetupIconFile=..\..\resources\uplink-console.ico
UninstallDisplayIcon={app}\{#ExeName}
UninstallDisplayName={#AppName} {#AppVersion}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
; A running copy would keep its files locked: ask to close it first.
CloseApplications=yes
#ifdef SignTool
SignTool={#SignTool}
SignedUninstaller=yes
#endif

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[InstallDelete]
; An upgrade replaces the program folder's libraries rather than mixing two versions.
Type: filesandordirs; Name: "{app}\_internal"

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#ExeName}"
Name: "{autoprograms}\{#AppName} demo"; Filename: "{app}\{#ExeName}"; Parameters: "--demo"; Comment: "The console on simulated devices of all five platforms"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#ExeName}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#ExeName}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
