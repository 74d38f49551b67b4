//! The container's seccomp deny-list, as LXD's default policy: kexec, kernel module loading and
//! open_by_handle_at fail with ENOSYS, a forced umount fails with EACCES; everything else is
//! allowed. The BPF program is built as data (unit-tested with a tiny interpreter) and installed
//! without NO_NEW_PRIVS, so setuid programs keep working inside.

use crate::error::{Error, Result};

/// One BPF instruction (struct sock_filter).
pub type Insn = libc::sock_filter;

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// Low 32 bits of args[1] (little-endian): seccomp_data.args starts at 16.
const OFF_ARG1_LO: u32 = 16 + 8;

pub const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
pub const fn ret_errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
const X32_BIT: u32 = 0x4000_0000;

/// What a denied syscall does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Always fail with this errno.
    Errno(i32),
    /// Fail with EACCES when the flags argument has MNT_FORCE (umount2).
    ForceUmount,
}

/// Per architecture: its audit id and the (syscall number, rule) pairs.
pub type ArchRules = (u32, Vec<(u32, Rule)>);

/// LXD's default deny-list for every ABI a process on this host can use.
pub fn default_rules() -> Vec<ArchRules> {
    let enosys = Rule::Errno(libc::ENOSYS);
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        // x86_64 numbers; x32 uses the same table with the x32 bit, except kexec_load (528).
        let common = [
            (320u32, enosys), // kexec_file_load
            (304, enosys),    // open_by_handle_at
            (175, enosys),    // init_module
            (313, enosys),    // finit_module
            (176, enosys),    // delete_module
            (166, Rule::ForceUmount),
        ];
        let mut v: Vec<(u32, Rule)> = vec![(246, enosys)]; // kexec_load
        v.extend(common);
        v.push((X32_BIT | 528, enosys));
        v.extend(common.iter().map(|(n, r)| (X32_BIT | n, *r)));
        out.push((AUDIT_ARCH_X86_64, v));
        out.push((
            AUDIT_ARCH_I386,
            vec![
                (283, enosys),           // kexec_load
                (342, enosys),           // open_by_handle_at
                (128, enosys),           // init_module
                (350, enosys),           // finit_module
                (129, enosys),           // delete_module
                (52, Rule::ForceUmount), // umount2
            ],
        ));
    }
    #[cfg(target_arch = "aarch64")]
    {
        out.push((
            AUDIT_ARCH_AARCH64,
            vec![
                (libc::SYS_kexec_load as u32, enosys),
                (libc::SYS_kexec_file_load as u32, enosys),
                (libc::SYS_open_by_handle_at as u32, enosys),
                (libc::SYS_init_module as u32, enosys),
                (libc::SYS_finit_module as u32, enosys),
                (libc::SYS_delete_module as u32, enosys),
                (libc::SYS_umount2 as u32, Rule::ForceUmount),
            ],
        ));
    }
    let _ = AUDIT_ARCH_AARCH64;
    out
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// Compiles rules into a BPF program. Layout per arch:
/// `jeq arch ? next : skip-block`, `ld nr`, one test per rule, `ret allow`.
pub fn compile(rules: &[ArchRules]) -> Result<Vec<Insn>> {
    let mut prog = vec![stmt(BPF_LD_W_ABS, OFF_ARCH)];
    for (arch, list) in rules {
        let mut body = vec![stmt(BPF_LD_W_ABS, OFF_NR)];
        for (nr, rule) in list {
            match rule {
                Rule::Errno(e) => {
                    body.push(jump(BPF_JEQ_K, *nr, 0, 1));
                    body.push(stmt(BPF_RET_K, ret_errno(*e)));
                }
                Rule::ForceUmount => {
                    // nr matches: load args[1], deny if MNT_FORCE is set, else allow. This
                    // clobbers the accumulator, so both outcomes return here.
                    body.push(jump(BPF_JEQ_K, *nr, 0, 4));
                    body.push(stmt(BPF_LD_W_ABS, OFF_ARG1_LO));
                    body.push(jump(BPF_JSET_K, libc::MNT_FORCE as u32, 0, 1));
                    body.push(stmt(BPF_RET_K, ret_errno(libc::EACCES)));
                    body.push(stmt(BPF_RET_K, RET_ALLOW));
                }
            }
        }
        body.push(stmt(BPF_RET_K, RET_ALLOW));
        let skip = u8::try_from(body.len())
            .map_err(|_| Error::Invalid("seccomp rule list is too long".into()))?;
        prog.push(jump(BPF_JEQ_K, *arch, 0, skip));
        prog.extend(body);
        // The next arch test needs the arch again.
        prog.push(stmt(BPF_LD_W_ABS, OFF_ARCH));
    }
    prog.push(stmt(BPF_RET_K, RET_ALLOW));
    Ok(prog)
}

/// Installs `prog` for this thread and its future children. Needs CAP_SYS_ADMIN in the current
/// user namespace (the container's init has it); deliberately does not set NO_NEW_PRIVS.
pub fn install(prog: &[Insn]) -> Result<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len())
            .map_err(|_| Error::Invalid("seccomp program is too long".into()))?,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points to `prog`, which stays alive for the call; the kernel copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc < 0 {
        return Err(Error::sys(
            "install the seccomp filter",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the subset of classic BPF we emit against (arch, nr, args[1]).
    fn run(prog: &[Insn], arch: u32, nr: u32, arg1: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        data[24..32].copy_from_slice(&arg1.to_le_bytes());
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            match i.code {
                BPF_LD_W_ABS => {
                    let k = i.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                    pc += 1;
                }
                BPF_JEQ_K => pc += 1 + if acc == i.k { i.jt } else { i.jf } as usize,
                BPF_JSET_K => pc += 1 + if acc & i.k != 0 { i.jt } else { i.jf } as usize,
                BPF_RET_K => return i.k,
                c => panic!("unexpected opcode {c}"),
            }
        }
    }

    #[test]
    fn deny_list_behaves() {
        let prog = compile(&default_rules()).unwrap();
        let enosys = ret_errno(libc::ENOSYS);
        #[cfg(target_arch = "x86_64")]
        {
            let a = AUDIT_ARCH_X86_64;
            assert_eq!(run(&prog, a, 246, 0), enosys);
            assert_eq!(run(&prog, a, 320, 0), enosys);
            assert_eq!(run(&prog, a, 175, 0), enosys);
            assert_eq!(run(&prog, a, 304, 0), enosys);
            assert_eq!(run(&prog, a, 0, 0), RET_ALLOW); // read
            assert_eq!(run(&prog, a, 166, 0), RET_ALLOW); // umount2(path, 0)
            assert_eq!(run(&prog, a, 166, 2), RET_ALLOW); // MNT_DETACH
            assert_eq!(run(&prog, a, 166, 1 | 2), ret_errno(libc::EACCES)); // MNT_FORCE
            assert_eq!(run(&prog, a, X32_BIT | 528, 0), enosys);
            assert_eq!(run(&prog, a, X32_BIT | 166, 1), ret_errno(libc::EACCES));
            assert_eq!(run(&prog, AUDIT_ARCH_I386, 283, 0), enosys);
            assert_eq!(run(&prog, AUDIT_ARCH_I386, 246, 0), RET_ALLOW);
            assert_eq!(run(&prog, AUDIT_ARCH_I386, 52, 1), ret_errno(libc::EACCES));
            assert_eq!(run(&prog, 0x1234, 246, 0), RET_ALLOW);
        }
        assert!(prog.len() < 80);
    }
}
