//! Inode numbers: what each one names, and back.

use super::*;

/// A node, decoded from its inode number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Node {
    Root,
    FolderDir(usize),
    Sub(usize, Subdir),
    Control(usize, Control),
    Message(usize, u32, u32),
    Overlay(usize, OsString),
}

impl Node {
    /// The folder a node belongs to (`None` for the root).
    pub(super) fn folder(&self) -> Option<usize> {
        match self {
            Node::Root => None,
            Node::FolderDir(g)
            | Node::Sub(g, _)
            | Node::Control(g, _)
            | Node::Message(g, ..)
            | Node::Overlay(g, _) => Some(*g),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Control {
    Uidlist,
    Keywords,
    Maildirfolder,
    Subscriptions,
}

impl Control {
    pub(super) const ALL: [Control; 4] = [
        Control::Uidlist,
        Control::Keywords,
        Control::Maildirfolder,
        Control::Subscriptions,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Control::Uidlist => model::UIDLIST,
            Control::Keywords => model::KEYWORDS,
            Control::Maildirfolder => model::MAILDIRFOLDER,
            Control::Subscriptions => model::SUBSCRIPTIONS,
        }
    }

    pub(super) fn offset(self) -> u64 {
        match self {
            Control::Uidlist => 4,
            Control::Keywords => 5,
            Control::Maildirfolder => 6,
            Control::Subscriptions => 7,
        }
    }
}

pub(super) fn sub_offset(s: Subdir) -> u64 {
    match s {
        Subdir::Cur => 1,
        Subdir::New => 2,
        Subdir::Tmp => 3,
    }
}

impl MailFs {
    pub(super) fn decode(&self, ino: Ino) -> Option<Node> {
        if ino == ROOT {
            return Some(Node::Root);
        }
        if ino >= OVERLAY_BASE {
            let map = self.overlay_inos.lock().unwrap_or_else(|e| e.into_inner());
            return map.name(ino).map(|(g, n)| Node::Overlay(g, n));
        }
        if ino >= 1 << 32 {
            let slot = (ino >> 32) as u32;
            let uid = ino as u32;
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let g = *slots.get(slot as usize - 1)?;
            return Some(Node::Message(g, slot, uid));
        }
        let rel = ino.checked_sub(FIRST_BLOCK)?;
        let g = (rel / BLOCK) as usize;
        self.state(g)?;
        Some(match rel % BLOCK {
            0 => Node::FolderDir(g),
            1 => Node::Sub(g, Subdir::Cur),
            2 => Node::Sub(g, Subdir::New),
            3 => Node::Sub(g, Subdir::Tmp),
            k => Node::Control(g, *Control::ALL.iter().find(|c| c.offset() == k)?),
        })
    }

    pub(super) fn overlay_ino(&self, g: usize, name: &OsStr) -> Ino {
        self.overlay_inos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ino(g, name)
    }
}

/// Inode numbers of overlay files, which follow renames and hard links (Dovecot rotates its
/// transaction log with `link`).
#[derive(Default)]
pub(super) struct OverlayInodes {
    by_name: HashMap<(usize, OsString), Ino>,
    /// Every name of an inode (more than one after `link`).
    names: HashMap<Ino, (usize, Vec<OsString>)>,
    next: u64,
}

impl OverlayInodes {
    pub(super) fn ino(&mut self, g: usize, name: &OsStr) -> Ino {
        let key = (g, name.to_os_string());
        if let Some(&ino) = self.by_name.get(&key) {
            return ino;
        }
        let ino = OVERLAY_BASE + self.next;
        self.next += 1;
        self.by_name.insert(key, ino);
        self.names.insert(ino, (g, vec![name.to_os_string()]));
        ino
    }

    pub(super) fn name(&self, ino: Ino) -> Option<(usize, OsString)> {
        let (g, names) = self.names.get(&ino)?;
        Some((*g, names.first()?.clone()))
    }

    pub(super) fn remove(&mut self, g: usize, name: &OsStr) {
        let Some(ino) = self.by_name.remove(&(g, name.to_os_string())) else {
            return;
        };
        if let Some((_, names)) = self.names.get_mut(&ino) {
            names.retain(|n| n != name);
            if names.is_empty() {
                self.names.remove(&ino);
            }
        }
    }

    /// `to` becomes another name of `from`'s inode.
    pub(super) fn link(&mut self, g: usize, from: &OsStr, to: &OsStr) {
        self.remove(g, to);
        let ino = self.ino(g, from);
        self.by_name.insert((g, to.to_os_string()), ino);
        if let Some((_, names)) = self.names.get_mut(&ino) {
            names.push(to.to_os_string());
        }
    }

    pub(super) fn rename(&mut self, g: usize, from: &OsStr, to: &OsStr) {
        if from == to {
            return;
        }
        self.link(g, from, to);
        self.remove(g, from);
    }
}
