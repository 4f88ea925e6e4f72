//! `/boot`: the read-only initial file system, a cpio "newc" archive GRUB loads as the module
//! named `initrd`.
use hal::println;

/// The boot file system (empty when no initrd was loaded).
#[derive(Clone, Copy)]
pub struct BootFs {
    archive: Option<cpio::Archive<'static>>,
}

static BOOT_FS: spin::Once<BootFs> = spin::Once::new();

/// The boot file system, once `init` has run.
pub fn get() -> BootFs {
    BOOT_FS.get().copied().unwrap_or(BootFs { archive: None })
}

pub fn init(info: &hal::BootInfo) -> BootFs {
    *BOOT_FS.call_once(|| init_fs(info))
}

fn init_fs(info: &hal::BootInfo) -> BootFs {
    let Some(m) = info.module("initrd") else {
        println!("/boot: no initrd module; /boot is empty");
        return BootFs { archive: None };
    };
    let archive = cpio::Archive::new(hal::mm::module_bytes(m));
    match archive.validate() {
        Ok(n) => {
            println!("/boot: {n} entries ({} KiB initrd)", m.range.len() / 1024);
            BootFs { archive: Some(archive) }
        }
        Err(e) => {
            println!("/boot: initrd rejected: {e}; /boot is empty");
            BootFs { archive: None }
        }
    }
}

impl BootFs {
    /// Files (not directories) in /boot: (name, size).
    pub fn files(&self) -> impl Iterator<Item = (&'static str, usize)> {
        self.archive
            .into_iter()
            .flat_map(|a| a.entries())
            .filter_map(|e| e.ok())
            .filter(|e| e.is_file())
            .map(|e| (e.name, e.data.len()))
    }

    /// Contents of `/boot/<name>` (or `name` given with the `/boot/` prefix).
    pub fn read(&self, name: &str) -> Option<&'static [u8]> {
        let name = name.strip_prefix("/boot/").unwrap_or(name);
        let e = self.archive?.find(name)?;
        e.is_file().then_some(e.data)
    }
}
