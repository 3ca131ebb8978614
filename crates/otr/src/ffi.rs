//! The safe wrapper over `libotr-sys`: every `unsafe` block of the workspace's
//! OTR support lives in this module.
//!
//! - [`init`] runs `gcry_check_version` and `otrl_init` once per process.
//! - [`cvt`] converts every libgcrypt/libotr return code, in one place.
//! - [`UserState`] owns an `OtrlUserState` (RAII: `otrl_userstate_free` on
//!   drop frees its private keys, instance tags, contexts and session keys).
//! - [`OpData`] is what the `OtrlMessageAppOps` callbacks write into; a
//!   session passes a pointer to its boxed `OpData` as libotr's `opdata` for
//!   the duration of one libotr call, and drains it afterwards.
//!
//! Threading: libotr keeps no global mutable state after `otrl_init`, but a
//! user state and everything reachable from it (contexts, keys) must never be
//! touched by two threads at once. [`UserState`] is therefore `Send` (moving
//! it to another thread is fine) and deliberately not `Sync`; each session
//! owns its own user state, so the core `Session: Send` bound holds without
//! any sharing.
#![allow(unsafe_code)]

use e2elab_core::Error;
use libotr_sys as sys;
use std::ffi::{c_char, c_int, c_uint, c_ushort, c_void, CStr, CString};
use std::ptr::{self, NonNull};
use std::sync::OnceLock;
use zeroize::Zeroizing;

/// The protocol name libotr files keys and contexts under.
pub const PROTOCOL: &str = "xmpp";

/// libotr's policy word.
pub type Policy = sys::OtrlPolicy;

/// libotr's instance tag.
pub type InsTag = sys::otrl_instag_t;

/// The smallest valid instance tag (`OTRL_MIN_VALID_INSTAG`).
pub const MIN_VALID_INSTAG: InsTag = 0x100;

/// Initialise libgcrypt and libotr once per process.
pub fn init() -> Result<(), Error> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        // SAFETY: gcry_check_version(NULL) only initialises libgcrypt and
        // returns a static string; otrl_init checks the header version against
        // the library and initialises its own globals. Both run once, here,
        // guarded by the OnceLock.
        unsafe {
            if sys::gcry_check_version(ptr::null()).is_null() {
                return Err("gcry_check_version failed".to_string());
            }
            let e = sys::otrl_init(
                sys::OTRL_VERSION_MAJOR,
                sys::OTRL_VERSION_MINOR,
                sys::OTRL_VERSION_SUB,
            );
            if e != 0 {
                return Err(format!("otrl_init: {}", strerror(e)));
            }
        }
        Ok(())
    })
    .clone()
    .map_err(Error::Backend)
}

/// libgcrypt's description of an error code.
fn strerror(e: sys::gcry_error_t) -> String {
    // SAFETY: gcry_strerror returns a pointer to a static, NUL-terminated string.
    unsafe {
        let p = sys::gcry_strerror(e);
        if p.is_null() {
            format!("gcrypt error {e}")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// Convert a libgcrypt/libotr return code: the one place codes become `Error`s.
pub fn cvt(e: sys::gcry_error_t, what: &str) -> Result<(), Error> {
    if e == 0 {
        Ok(())
    } else {
        Err(Error::Backend(format!("libotr {what}: {}", strerror(e))))
    }
}

/// A C string from Rust text (no interior NUL).
pub fn cstring(s: &str, what: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::Backend(format!("{what} contains a NUL byte")))
}

/// Something a callback reported during one libotr call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CbEvent {
    /// `handle_msg_event`.
    Msg {
        /// The `OtrlMessageEvent` value.
        event: sys::OtrlMessageEvent,
        /// The message text libotr attached (unencrypted text, error text).
        message: Option<String>,
    },
    /// `handle_smp_event`.
    Smp {
        /// The `OtrlSMPEvent` value.
        event: sys::OtrlSMPEvent,
        /// Progress percent.
        progress: u16,
        /// The question, for `ASK_FOR_ANSWER`.
        question: Option<String>,
    },
    /// `gone_secure`: the AKE finished on this context.
    GoneSecure(SecureInfo),
    /// `still_secure`: a new AKE finished on an already secure context.
    StillSecure(SecureInfo),
    /// `gone_insecure`.
    GoneInsecure,
    /// `create_instag`: libotr found no instance tag (should never happen: we load one).
    InstagMissing,
}

/// What `gone_secure` tells about the secured context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureInfo {
    /// The peer's instance tag (0 for v2).
    pub their_instance: InsTag,
    /// Protocol version in use.
    pub version: u32,
    /// SHA-1 fingerprint of the peer's DSA key, lowercase hex.
    pub fingerprint: Option<String>,
    /// The secure session id, as libotr displays it (bold half in brackets).
    pub ssid: String,
}

/// The Rust side of libotr's `opdata`. Boxed by its owner so its address is
/// stable while libotr holds the pointer (only during one call).
#[derive(Debug, Default)]
pub struct OpData {
    /// Policy returned by the `policy` callback.
    pub policy: Policy,
    /// Returned by `max_message_size` (0 = no fragmentation).
    pub max_message_size: c_int,
    /// OTR texts libotr asked us to put on the wire, in order.
    pub injected: Vec<String>,
    /// Callback events, in order.
    pub events: Vec<CbEvent>,
    /// Set by `convert_msg` on the receive path: a data message was decrypted
    /// and authenticated in this call.
    pub decrypted: bool,
}

impl OpData {
    /// Empty the per-call outputs.
    pub fn reset(&mut self) {
        self.injected.clear();
        self.events.clear();
        self.decrypted = false;
    }
}

/// Recover the `OpData` from libotr's `opdata` pointer.
///
/// # Safety
/// `opdata` must be the pointer a session passed to the current libotr call:
/// a live, exclusively borrowed `OpData`.
unsafe fn opdata<'a>(opdata: *mut c_void) -> Option<&'a mut OpData> {
    // SAFETY: per the contract above, the pointer is either null or a live
    // `&mut OpData` that nobody else uses during the callback.
    unsafe { opdata.cast::<OpData>().as_mut() }
}

unsafe fn opt_string(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: libotr passes NUL-terminated strings that live for the callback.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

unsafe extern "C" fn cb_policy(od: *mut c_void, _ctx: *mut sys::ConnContext) -> sys::OtrlPolicy {
    // SAFETY: `od` is the session's OpData (see `opdata`).
    unsafe { opdata(od) }.map_or(0, |d| d.policy)
}

unsafe extern "C" fn cb_is_logged_in(
    _od: *mut c_void,
    _a: *const c_char,
    _p: *const c_char,
    _r: *const c_char,
) -> c_int {
    1
}

unsafe extern "C" fn cb_inject(
    od: *mut c_void,
    _a: *const c_char,
    _p: *const c_char,
    _r: *const c_char,
    message: *const c_char,
) {
    // SAFETY: `od` is the session's OpData; `message` is a C string valid for the call.
    unsafe {
        if let (Some(d), Some(m)) = (opdata(od), opt_string(message)) {
            d.injected.push(m);
        }
    }
}

/// Read what `gone_secure`/`still_secure` report from a context.
///
/// # Safety
/// `ctx` is null or a live context of the current call.
unsafe fn secure_info(ctx: *mut sys::ConnContext) -> Option<SecureInfo> {
    // SAFETY: libotr hands a live context; the fingerprint pointer, when set,
    // points at 20 bytes owned by the context's fingerprint list.
    unsafe {
        let c = ctx.as_ref()?;
        let fingerprint = c
            .active_fingerprint
            .as_ref()
            .and_then(|f| (!f.fingerprint.is_null()).then_some(f.fingerprint))
            .map(|p| hex(std::slice::from_raw_parts(p, 20)));
        let len = c.sessionid_len.min(c.sessionid.len());
        let id = &c.sessionid[..len];
        let half = len / 2;
        let (a, b) = id.split_at(half);
        // Both halves, the same text at both ends: libotr bolds the first
        // half at one end and the second at the other (auth.c), so the bold
        // half alone is not a value the two users can compare.
        let ssid = format!("{} {}", hex(a), hex(b));
        Some(SecureInfo {
            their_instance: c.their_instance,
            version: c.protocol_version,
            fingerprint,
            ssid,
        })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

unsafe extern "C" fn cb_gone_secure(od: *mut c_void, ctx: *mut sys::ConnContext) {
    // SAFETY: see `opdata` and `secure_info`.
    unsafe {
        if let (Some(d), Some(i)) = (opdata(od), secure_info(ctx)) {
            d.events.push(CbEvent::GoneSecure(i));
        }
    }
}

unsafe extern "C" fn cb_still_secure(od: *mut c_void, ctx: *mut sys::ConnContext, _r: c_int) {
    // SAFETY: see `opdata` and `secure_info`.
    unsafe {
        if let (Some(d), Some(i)) = (opdata(od), secure_info(ctx)) {
            d.events.push(CbEvent::StillSecure(i));
        }
    }
}

unsafe extern "C" fn cb_gone_insecure(od: *mut c_void, _ctx: *mut sys::ConnContext) {
    // SAFETY: see `opdata`.
    if let Some(d) = unsafe { opdata(od) } {
        d.events.push(CbEvent::GoneInsecure);
    }
}

unsafe extern "C" fn cb_max_message_size(od: *mut c_void, _ctx: *mut sys::ConnContext) -> c_int {
    // SAFETY: see `opdata`.
    unsafe { opdata(od) }.map_or(0, |d| d.max_message_size)
}

unsafe extern "C" fn cb_smp_event(
    od: *mut c_void,
    event: sys::OtrlSMPEvent,
    _ctx: *mut sys::ConnContext,
    progress: c_ushort,
    question: *mut c_char,
) {
    // SAFETY: see `opdata`; `question` is null or a C string valid for the call.
    unsafe {
        if let Some(d) = opdata(od) {
            let question = opt_string(question);
            d.events.push(CbEvent::Smp {
                event,
                progress,
                question,
            });
        }
    }
}

unsafe extern "C" fn cb_msg_event(
    od: *mut c_void,
    event: sys::OtrlMessageEvent,
    _ctx: *mut sys::ConnContext,
    message: *const c_char,
    _err: sys::gcry_error_t,
) {
    // SAFETY: see `opdata`; `message` is null or a C string valid for the call.
    unsafe {
        if let Some(d) = opdata(od) {
            let message = opt_string(message);
            d.events.push(CbEvent::Msg { event, message });
        }
    }
}

unsafe extern "C" fn cb_create_instag(od: *mut c_void, _a: *const c_char, _p: *const c_char) {
    // SAFETY: see `opdata`.
    if let Some(d) = unsafe { opdata(od) } {
        d.events.push(CbEvent::InstagMissing);
    }
}

/// Used only as a signal: libotr calls it with `OTRL_CONVERT_RECEIVING` exactly
/// when a data message decrypted and authenticated. `*dest` stays NULL (no
/// conversion), so libotr keeps its own plaintext.
unsafe extern "C" fn cb_convert(
    od: *mut c_void,
    _ctx: *mut sys::ConnContext,
    kind: sys::OtrlConvertType,
    _dest: *mut *mut c_char,
    _src: *const c_char,
) {
    // SAFETY: see `opdata`.
    if let Some(d) = unsafe { opdata(od) } {
        if kind == sys::OtrlConvertType_OTRL_CONVERT_RECEIVING {
            d.decrypted = true;
        }
    }
}

/// The callback table. `otr_error_message` is deliberately absent: libotr then
/// sends no `?OTR Error:` replies to bad input (the core contract says a
/// rejected input emits nothing). `timer_control` is absent: it only drives
/// libotr's wiping of idle master-context keys, which a session's drop does.
pub fn app_ops() -> &'static sys::OtrlMessageAppOps {
    static OPS: OnceLock<sys::OtrlMessageAppOps> = OnceLock::new();
    OPS.get_or_init(|| sys::OtrlMessageAppOps {
        policy: Some(cb_policy),
        is_logged_in: Some(cb_is_logged_in),
        inject_message: Some(cb_inject),
        gone_secure: Some(cb_gone_secure),
        gone_insecure: Some(cb_gone_insecure),
        still_secure: Some(cb_still_secure),
        max_message_size: Some(cb_max_message_size),
        handle_smp_event: Some(cb_smp_event),
        handle_msg_event: Some(cb_msg_event),
        create_instag: Some(cb_create_instag),
        convert_msg: Some(cb_convert),
        ..Default::default()
    })
}

/// An anonymous in-memory file (`memfd_create`) opened as a read-write
/// `FILE*`. libotr's key reader calls `fstat(fileno(f))`, so a `fmemopen`
/// stream (no file descriptor) cannot be used. Wiped and closed on drop.
struct MemFile(NonNull<libc::FILE>);

impl MemFile {
    fn new(content: &[u8]) -> Result<Self, Error> {
        // SAFETY: memfd_create takes a NUL-terminated name and flags; the
        // descriptor is owned here and handed to fdopen (or closed on failure).
        unsafe {
            let fd = libc::memfd_create(c"e2elab-otr".as_ptr(), libc::MFD_CLOEXEC);
            if fd < 0 {
                return Err(Error::Backend("memfd_create failed".into()));
            }
            let mut off = 0usize;
            while off < content.len() {
                let n = libc::write(fd, content[off..].as_ptr().cast(), content.len() - off);
                if n <= 0 {
                    libc::close(fd);
                    return Err(Error::Backend("write to memfd failed".into()));
                }
                off += n as usize;
            }
            libc::lseek(fd, 0, libc::SEEK_SET);
            let f = libc::fdopen(fd, c"w+".as_ptr());
            match NonNull::new(f) {
                Some(f) => Ok(MemFile(f)),
                None => {
                    libc::close(fd);
                    Err(Error::Backend("fdopen failed".into()))
                }
            }
        }
    }

    fn as_sys(&self) -> *mut sys::FILE {
        self.0.as_ptr().cast()
    }

    /// Everything in the file (flushes first).
    fn contents(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        // SAFETY: the FILE is open; we flush it and read its descriptor with pread.
        unsafe {
            libc::fflush(self.0.as_ptr());
            let fd = libc::fileno(self.0.as_ptr());
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) != 0 {
                return Err(Error::Backend("fstat on memfd failed".into()));
            }
            let len = usize::try_from(st.st_size).unwrap_or(0);
            let mut v = Zeroizing::new(vec![0u8; len]);
            let mut off = 0usize;
            while off < len {
                let n = libc::pread(
                    fd,
                    v[off..].as_mut_ptr().cast(),
                    len - off,
                    off as libc::off_t,
                );
                if n <= 0 {
                    return Err(Error::Backend("read from memfd failed".into()));
                }
                off += n as usize;
            }
            Ok(v)
        }
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        // SAFETY: the FILE is open; we overwrite the file's bytes with zeros,
        // truncate it and close it exactly once.
        unsafe {
            let f = self.0.as_ptr();
            libc::fflush(f);
            let fd = libc::fileno(f);
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) == 0 {
                let zeros = [0u8; 4096];
                let mut off: libc::off_t = 0;
                while off < st.st_size {
                    let n = (st.st_size - off).min(zeros.len() as libc::off_t) as usize;
                    if libc::pwrite(fd, zeros.as_ptr().cast(), n, off) <= 0 {
                        break;
                    }
                    off += n as libc::off_t;
                }
                libc::ftruncate(fd, 0);
            }
            libc::fclose(f);
        }
    }
}

/// An `OtrlUserState`: private keys, instance tags and connection contexts of
/// one account. Freed (keys wiped by libgcrypt's secure memory where libotr
/// used it) on drop.
#[derive(Debug)]
pub struct UserState(NonNull<sys::s_OtrlUserState>);

// SAFETY: libotr has no thread affinity; a user state is only unsafe to use
// from two threads *at once*. `UserState` is not `Sync` and every use goes
// through `&self`/`&mut self` of its single owner, so moving it between threads
// is sound.
unsafe impl Send for UserState {}

impl UserState {
    /// A fresh, empty user state.
    pub fn new() -> Result<Self, Error> {
        init()?;
        // SAFETY: libotr is initialised; otrl_userstate_create allocates.
        let p = unsafe { sys::otrl_userstate_create() };
        NonNull::new(p)
            .map(UserState)
            .ok_or_else(|| Error::Backend("otrl_userstate_create failed".into()))
    }

    /// The raw pointer, for calls in this crate.
    pub fn raw(&self) -> sys::OtrlUserState {
        self.0.as_ptr()
    }

    /// Load private keys from libotr key-file text.
    pub fn read_privkey(&self, text: &[u8]) -> Result<(), Error> {
        let f = MemFile::new(text)?;
        // SAFETY: a valid user state and an open FILE*.
        let e = unsafe { sys::otrl_privkey_read_FILEp(self.raw(), f.as_sys()) };
        drop(f);
        cvt(e, "privkey_read")
    }

    /// Load an instance tag for (account, protocol).
    pub fn set_instag(&self, account: &str, tag: InsTag) -> Result<(), Error> {
        let text = format!("{account}\t{PROTOCOL}\t{tag:08x}\n");
        let f = MemFile::new(text.as_bytes())?;
        // SAFETY: a valid user state and an open FILE*.
        let e = unsafe { sys::otrl_instag_read_FILEp(self.raw(), f.as_sys()) };
        drop(f);
        cvt(e, "instag_read")
    }

    /// Generate a DSA key for (account, protocol) and return the key file text.
    /// Uses libgcrypt's RNG (cannot be seeded).
    pub fn generate_privkey(&self, account: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        let acc = cstring(account, "account")?;
        let proto = cstring(PROTOCOL, "protocol")?;
        // libotr writes the key file, seeks back and reads it in again
        // (fstat on its descriptor): an anonymous memfd, wiped on drop.
        let f = MemFile::new(&[])?;
        // SAFETY: valid user state, open read-write FILE*, NUL-terminated strings.
        let e = unsafe {
            sys::otrl_privkey_generate_FILEp(self.raw(), f.as_sys(), acc.as_ptr(), proto.as_ptr())
        };
        cvt(e, "privkey_generate")?;
        let out = f.contents()?;
        drop(f);
        if out.is_empty() {
            return Err(Error::Backend("empty key file".into()));
        }
        Ok(out)
    }

    /// SHA-1 fingerprint (lowercase hex) of our key for `account`.
    pub fn fingerprint(&self, account: &str) -> Result<String, Error> {
        let acc = cstring(account, "account")?;
        let proto = cstring(PROTOCOL, "protocol")?;
        let mut h = [0u8; 20];
        // SAFETY: `h` has the 20 bytes the function writes.
        let p = unsafe {
            sys::otrl_privkey_fingerprint_raw(
                self.raw(),
                h.as_mut_ptr(),
                acc.as_ptr(),
                proto.as_ptr(),
            )
        };
        if p.is_null() {
            return Err(Error::Backend(format!("no private key for {account}")));
        }
        Ok(hex(&h))
    }
}

/// libotr 4.1.0 and 4.1.1 never free a context's `context_priv` block in
/// `otrl_context_forget` (it only empties it), a definite leak of ~730 bytes
/// per context. For exactly those versions we collect the blocks before
/// `otrl_userstate_free` and free them after it.
/// The workaround applies only when both the headers we were built against and
/// the library loaded at run time are 4.1.0 or 4.1.1: a patched or newer
/// runtime library that frees the block itself must not see a second free.
fn free_context_priv_after() -> bool {
    static LEAKY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LEAKY.get_or_init(|| {
        let headers = sys::OTRL_VERSION_MAJOR == 4
            && sys::OTRL_VERSION_MINOR == 1
            && sys::OTRL_VERSION_SUB <= 1;
        // SAFETY: otrl_version returns a pointer to a static NUL-terminated string.
        let runtime = unsafe { std::ffi::CStr::from_ptr(sys::otrl_version()) };
        headers && matches!(runtime.to_bytes(), b"4.1.0" | b"4.1.1")
    })
}

impl Drop for UserState {
    fn drop(&mut self) {
        let mut orphans: Vec<*mut sys::ConnContextPriv> = Vec::new();
        if free_context_priv_after() {
            // SAFETY: walks the user state's context list (owned by it and not
            // being modified); only reads the `next` and `context_priv` pointers.
            unsafe {
                let mut c = (*self.0.as_ptr()).context_root;
                while let Some(ctx) = c.as_ref() {
                    if !ctx.context_priv.is_null() {
                        orphans.push(ctx.context_priv);
                    }
                    c = ctx.next;
                }
            }
        }
        // SAFETY: created by otrl_userstate_create, freed exactly once; no
        // context pointer into it survives (sessions only hold them within a call).
        unsafe { sys::otrl_userstate_free(self.0.as_ptr()) }
        for p in orphans {
            // SAFETY: each block came from otrl_context_priv_new (malloc);
            // otrl_userstate_free emptied it (force_finished) and freed the
            // context that pointed at it without freeing the block itself
            // (libotr <= 4.1.1), so nothing else references it now.
            unsafe { libc::free(p.cast()) }
        }
    }
}

/// The accounts and names one session passes to libotr.
#[derive(Debug)]
pub struct Names {
    /// Our account (local bare JID).
    pub account: CString,
    /// `xmpp`.
    pub protocol: CString,
    /// The peer (full JID).
    pub peer: CString,
}

/// What `otrl_message_receiving` returned.
#[derive(Debug, Default)]
pub struct Received {
    /// libotr's "ignore" flag (1 = internal message, nothing to show).
    pub ignore: bool,
    /// Decrypted or passed-through text.
    pub text: Option<Zeroizing<String>>,
    /// A disconnect TLV arrived.
    pub disconnected: bool,
}

/// One libotr call's worth of access to a user state with our callbacks.
pub struct Call<'a> {
    /// The user state.
    pub us: &'a UserState,
    /// Account / protocol / peer.
    pub names: &'a Names,
    /// Callback sink.
    pub od: &'a mut OpData,
}

impl Call<'_> {
    fn od_ptr(&mut self) -> *mut c_void {
        (self.od as *mut OpData).cast()
    }

    /// `otrl_message_sending` with `OTRL_FRAGMENT_SEND_ALL`: every wire text
    /// (whole or fragments) arrives through `inject_message`.
    pub fn sending(&mut self, their_instag: InsTag, text: &CStr) -> Result<(), Error> {
        let mut msg: *mut c_char = ptr::null_mut();
        let mut ctx: *mut sys::ConnContext = ptr::null_mut();
        let od = self.od_ptr();
        // SAFETY: valid user state, static ops, `od` points at our OpData for
        // the call, all strings NUL-terminated; out-pointers are locals.
        let e = unsafe {
            sys::otrl_message_sending(
                self.us.raw(),
                app_ops(),
                od,
                self.names.account.as_ptr(),
                self.names.protocol.as_ptr(),
                self.names.peer.as_ptr(),
                their_instag,
                text.as_ptr(),
                ptr::null_mut(),
                &mut msg,
                sys::OtrlFragmentPolicy_OTRL_FRAGMENT_SEND_ALL,
                &mut ctx,
                None,
                ptr::null_mut(),
            )
        };
        if !msg.is_null() {
            // SAFETY: libotr allocated it; freed once with its own free.
            unsafe { sys::otrl_message_free(msg) };
        }
        cvt(e, "message_sending")
    }

    /// `otrl_message_receiving`.
    pub fn receiving(&mut self, text: &CStr) -> Received {
        let mut newmsg: *mut c_char = ptr::null_mut();
        let mut tlvs: *mut sys::OtrlTLV = ptr::null_mut();
        let mut ctx: *mut sys::ConnContext = ptr::null_mut();
        let od = self.od_ptr();
        // SAFETY: as in `sending`; out-pointers are locals we free below.
        let ignore = unsafe {
            sys::otrl_message_receiving(
                self.us.raw(),
                app_ops(),
                od,
                self.names.account.as_ptr(),
                self.names.protocol.as_ptr(),
                self.names.peer.as_ptr(),
                text.as_ptr(),
                &mut newmsg,
                &mut tlvs,
                &mut ctx,
                None,
                ptr::null_mut(),
            )
        };
        let mut r = Received {
            ignore: ignore != 0,
            ..Default::default()
        };
        if !newmsg.is_null() {
            // SAFETY: libotr returned a NUL-terminated malloc'd string; we copy
            // it, wipe the C copy and free it with otrl_message_free.
            unsafe {
                let c = CStr::from_ptr(newmsg);
                let len = c.to_bytes().len();
                r.text = Some(Zeroizing::new(c.to_string_lossy().into_owned()));
                ptr::write_bytes(newmsg, 0, len);
                sys::otrl_message_free(newmsg);
            }
        }
        if !tlvs.is_null() {
            // SAFETY: `tlvs` is libotr's list, searched then freed once.
            unsafe {
                r.disconnected =
                    !sys::otrl_tlv_find(tlvs, sys::OTRL_TLV_DISCONNECTED as c_ushort).is_null();
                sys::otrl_tlv_free(tlvs);
            }
        }
        r
    }

    /// `otrl_message_disconnect` (sends the disconnect TLV when encrypted).
    pub fn disconnect(&mut self, their_instag: InsTag) {
        let od = self.od_ptr();
        // SAFETY: as in `sending`.
        unsafe {
            sys::otrl_message_disconnect(
                self.us.raw(),
                app_ops(),
                od,
                self.names.account.as_ptr(),
                self.names.protocol.as_ptr(),
                self.names.peer.as_ptr(),
                their_instag,
            )
        }
    }

    /// The context for the peer instance, if libotr has one.
    fn context(&self, their_instag: InsTag) -> Option<NonNull<sys::ConnContext>> {
        // SAFETY: lookup only (add_if_missing = 0); the pointer stays valid
        // until the user state changes, and we use it only within this call.
        let p = unsafe {
            sys::otrl_context_find(
                self.us.raw(),
                self.names.peer.as_ptr(),
                self.names.account.as_ptr(),
                self.names.protocol.as_ptr(),
                their_instag,
                0,
                ptr::null_mut(),
                None,
                ptr::null_mut(),
            )
        };
        NonNull::new(p)
    }

    /// (our keyid, their keyid) of the context, for derived op counts.
    pub fn keyids(&self, their_instag: InsTag) -> Option<(c_uint, c_uint)> {
        let c = self.context(their_instag)?;
        // SAFETY: a live context from `context`; context_priv is always set.
        unsafe {
            let p = c.as_ref().context_priv.as_ref()?;
            Some((p.our_keyid, p.their_keyid))
        }
    }

    /// Whether the context is in OTRL_MSGSTATE_ENCRYPTED.
    pub fn encrypted(&self, their_instag: InsTag) -> bool {
        self.context(their_instag).is_some_and(|c| {
            // SAFETY: a live context from `context`.
            unsafe { c.as_ref().msgstate == sys::OtrlMessageState_OTRL_MSGSTATE_ENCRYPTED }
        })
    }

    /// Start SMP with a shared secret (and optional question).
    pub fn initiate_smp(
        &mut self,
        their_instag: InsTag,
        question: Option<&CStr>,
        secret: &[u8],
    ) -> Result<(), Error> {
        let c = self
            .context(their_instag)
            .ok_or_else(|| Error::Backend("no OTR context".into()))?;
        let od = self.od_ptr();
        // SAFETY: live context of this user state; `secret` outlives the call.
        unsafe {
            match question {
                Some(q) => sys::otrl_message_initiate_smp_q(
                    self.us.raw(),
                    app_ops(),
                    od,
                    c.as_ptr(),
                    q.as_ptr(),
                    secret.as_ptr(),
                    secret.len(),
                ),
                None => sys::otrl_message_initiate_smp(
                    self.us.raw(),
                    app_ops(),
                    od,
                    c.as_ptr(),
                    secret.as_ptr(),
                    secret.len(),
                ),
            }
        }
        Ok(())
    }

    /// Answer an SMP request with our secret.
    pub fn respond_smp(&mut self, their_instag: InsTag, secret: &[u8]) -> Result<(), Error> {
        let c = self
            .context(their_instag)
            .ok_or_else(|| Error::Backend("no OTR context".into()))?;
        let od = self.od_ptr();
        // SAFETY: live context of this user state; `secret` outlives the call.
        unsafe {
            sys::otrl_message_respond_smp(
                self.us.raw(),
                app_ops(),
                od,
                c.as_ptr(),
                secret.as_ptr(),
                secret.len(),
            )
        }
        Ok(())
    }

    /// RESEARCH HOOK (the security experiments' compromise of this side):
    /// every DH value the context holds (our current and previous key pairs,
    /// the peer's current and previous public values, with key ids) and what
    /// the AKE left in `context->auth` (our AKE key pair, the peer's AKE
    /// public value, its fingerprint, the secure session id). libotr keeps
    /// these in libgcrypt MPIs; they are printed as hex.
    pub fn dangerous_state(&self, their_instag: InsTag) -> Option<DangerousState> {
        dangerous_state(self.us, self.names, their_instag)
    }
}

/// [`Call::dangerous_state`] without a call's callback data (lookup only).
pub fn dangerous_state(
    us: &UserState,
    names: &Names,
    their_instag: InsTag,
) -> Option<DangerousState> {
    {
        // SAFETY: lookup only (add_if_missing = 0), as in `Call::context`.
        let p = unsafe {
            sys::otrl_context_find(
                us.raw(),
                names.peer.as_ptr(),
                names.account.as_ptr(),
                names.protocol.as_ptr(),
                their_instag,
                0,
                ptr::null_mut(),
                None,
                ptr::null_mut(),
            )
        };
        let c = NonNull::new(p)?;
        // SAFETY: live context of this user state; its MPIs belong to it and
        // are only printed; the auth struct is embedded in the context.
        unsafe {
            let ctx = c.as_ref();
            let p = ctx.context_priv.as_ref()?;
            let auth = &ctx.auth;
            let kp = |k: &sys::DH_keypair, id: c_uint| DhKey {
                keyid: id,
                private: mpi_hex(k.priv_),
                public: mpi_hex(k.pub_),
            };
            Some(DangerousState {
                version: ctx.protocol_version,
                our_keyid: p.our_keyid,
                their_keyid: p.their_keyid,
                ours: vec![
                    kp(&p.our_dh_key, p.our_keyid),
                    kp(&p.our_old_dh_key, p.our_keyid.saturating_sub(1)),
                ],
                theirs: vec![
                    (p.their_keyid, mpi_hex(p.their_y)),
                    (p.their_keyid.saturating_sub(1), mpi_hex(p.their_old_y)),
                ],
                ake_private: mpi_hex(auth.our_dh.priv_),
                ake_public: mpi_hex(auth.our_dh.pub_),
                ake_their_public: mpi_hex(auth.their_pub),
                ake_their_fingerprint: hex(&auth.their_fingerprint),
                ssid: hex(&ctx.sessionid[..ctx.sessionid_len.min(ctx.sessionid.len())]),
            })
        }
    }
}

/// One of our DH key pairs (hex MPIs; `None` where libotr holds none).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct DhKey {
    /// Its key id.
    pub keyid: u32,
    /// The private exponent.
    pub private: Option<String>,
    /// g^x.
    pub public: Option<String>,
}

/// RESEARCH HOOK: the DH values a context holds (see [`Call::dangerous_state`]).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct DangerousState {
    /// Protocol version of the session.
    pub version: u32,
    /// Our current key id.
    pub our_keyid: u32,
    /// The peer's current key id.
    pub their_keyid: u32,
    /// Our current and previous key pairs.
    pub ours: Vec<DhKey>,
    /// The peer's current and previous public values (key id, hex).
    pub theirs: Vec<(u32, Option<String>)>,
    /// Our AKE private exponent.
    pub ake_private: Option<String>,
    /// Our AKE public value.
    pub ake_public: Option<String>,
    /// The peer's AKE public value.
    pub ake_their_public: Option<String>,
    /// The fingerprint the AKE authenticated (hex).
    pub ake_their_fingerprint: String,
    /// The secure session id (hex).
    pub ssid: String,
}

impl std::fmt::Debug for DhKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhKey")
            .field("keyid", &self.keyid)
            .field("private", &self.private.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for DangerousState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DangerousState")
            .field("our_keyid", &self.our_keyid)
            .field("their_keyid", &self.their_keyid)
            .finish_non_exhaustive()
    }
}

impl Drop for DangerousState {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for k in &mut self.ours {
            if let Some(p) = &mut k.private {
                p.zeroize();
            }
        }
        if let Some(p) = &mut self.ake_private {
            p.zeroize();
        }
    }
}

unsafe fn mpi_hex(m: sys::gcry_mpi_t) -> Option<String> {
    if m.is_null() {
        return None;
    }
    let mut buf: *mut u8 = ptr::null_mut();
    // SAFETY: gcry_mpi_aprint allocates a NUL-terminated hex string for a
    // valid MPI; we copy it and release it with gcry_free.
    unsafe {
        let e = sys::gcry_mpi_aprint(
            sys::gcry_mpi_format_GCRYMPI_FMT_HEX,
            &mut buf,
            ptr::null_mut(),
            m,
        );
        if e != 0 || buf.is_null() {
            return None;
        }
        let s = CStr::from_ptr(buf.cast()).to_string_lossy().into_owned();
        sys::gcry_free(buf.cast());
        Some(s)
    }
}

/// The query message libotr sends for `policy` (`?OTRv3?` + explanation).
pub fn default_query(account: &CStr, policy: Policy) -> Result<String, Error> {
    // SAFETY: returns a malloc'd NUL-terminated string (or NULL) that we copy and free.
    unsafe {
        let p = sys::otrl_proto_default_query_msg(account.as_ptr(), policy);
        if p.is_null() {
            return Err(Error::Backend("otrl_proto_default_query_msg failed".into()));
        }
        let s = CStr::from_ptr(p).to_string_lossy().into_owned();
        libc::free(p.cast());
        Ok(s)
    }
}

/// A NUL-terminated copy of secret text, wiped on drop; `None` if the text has
/// an interior NUL.
pub fn secret_cstring(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    if text.as_bytes().contains(&0) {
        return None;
    }
    let mut v = Zeroizing::new(Vec::with_capacity(text.len() + 1));
    v.extend_from_slice(text.as_bytes());
    v.push(0);
    Some(v)
}

/// Borrow a buffer from [`secret_cstring`] as a `CStr`.
pub fn as_cstr(v: &[u8]) -> Result<&CStr, Error> {
    CStr::from_bytes_with_nul(v).map_err(|_| Error::Backend("bad C string".into()))
}

/// libotr's own primitive operations (DH key generation, DH session-key
/// derivation, DSA sign and verify), for the overhead bench: the floor an AKE
/// cannot go below, measured in the same run.
pub struct Primitives {
    us: UserState,
    privkey: NonNull<sys::OtrlPrivKey>,
    ours: sys::DH_keypair,
    theirs: sys::DH_keypair,
}

impl Primitives {
    /// Load a key file for `account` and make two DH key pairs.
    pub fn new(key_file: &[u8], account: &str) -> Result<Self, Error> {
        let us = UserState::new()?;
        us.read_privkey(key_file)?;
        let acc = cstring(account, "account")?;
        let proto = cstring(PROTOCOL, "protocol")?;
        // SAFETY: lookup in a valid user state; the key lives as long as `us`.
        let pk = unsafe { sys::otrl_privkey_find(us.raw(), acc.as_ptr(), proto.as_ptr()) };
        let privkey =
            NonNull::new(pk).ok_or_else(|| Error::Backend(format!("no key for {account}")))?;
        let mut p = Primitives {
            us,
            privkey,
            ours: sys::DH_keypair::default(),
            theirs: sys::DH_keypair::default(),
        };
        // SAFETY: zeroed key pairs are what otrl_dh_gen_keypair fills; freed in Drop.
        unsafe {
            cvt(
                sys::otrl_dh_gen_keypair(sys::DH1536_GROUP_ID, &mut p.ours),
                "dh_gen_keypair",
            )?;
            cvt(
                sys::otrl_dh_gen_keypair(sys::DH1536_GROUP_ID, &mut p.theirs),
                "dh_gen_keypair",
            )?;
        }
        Ok(p)
    }

    /// One DH key generation (one modexp).
    pub fn dh_keygen(&mut self) -> Result<(), Error> {
        let mut kp = sys::DH_keypair::default();
        // SAFETY: fills a zeroed key pair, which is freed right after.
        unsafe {
            let e = sys::otrl_dh_gen_keypair(sys::DH1536_GROUP_ID, &mut kp);
            sys::otrl_dh_keypair_free(&mut kp);
            cvt(e, "dh_gen_keypair")
        }
    }

    /// One session-key derivation (one modexp plus hashing and cipher set-up).
    pub fn dh_session(&mut self) -> Result<(), Error> {
        let mut s = sys::DH_sesskeys::default();
        // SAFETY: both key pairs are valid; the session struct starts zeroed
        // (blank) and is freed right after.
        unsafe {
            sys::otrl_dh_session_blank(&mut s);
            let e = sys::otrl_dh_session(&mut s, &self.ours, self.theirs.pub_);
            sys::otrl_dh_session_free(&mut s);
            cvt(e, "dh_session")
        }
    }

    /// One DSA signature over 32 bytes; returns it.
    pub fn dsa_sign(&mut self) -> Result<Vec<u8>, Error> {
        let data = [0x5au8; 32];
        let mut sig: *mut u8 = ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: valid private key of our user state; libotr mallocs the signature.
        unsafe {
            let e = sys::otrl_privkey_sign(
                &mut sig,
                &mut len,
                self.privkey.as_ptr(),
                data.as_ptr(),
                data.len(),
            );
            let out = if sig.is_null() {
                Vec::new()
            } else {
                let v = std::slice::from_raw_parts(sig, len).to_vec();
                libc::free(sig.cast());
                v
            };
            cvt(e, "privkey_sign")?;
            Ok(out)
        }
    }

    /// One DSA verification of a signature from [`Primitives::dsa_sign`].
    pub fn dsa_verify(&mut self, sig: &[u8]) -> Result<(), Error> {
        let data = [0x5au8; 32];
        // SAFETY: the private-key S-expression also carries the public
        // parameters libgcrypt's DSA verify reads; all buffers outlive the call.
        unsafe {
            let k = self.privkey.as_ref();
            cvt(
                sys::otrl_privkey_verify(
                    sig.as_ptr(),
                    sig.len(),
                    k.pubkey_type,
                    k.privkey,
                    data.as_ptr(),
                    data.len(),
                ),
                "privkey_verify",
            )
        }
    }
}

/// The symmetric primitives of libotr's data messages, on libgcrypt
/// directly (the harness's floors): AES-128-CTR, HMAC-SHA1, SHA-1/SHA-256,
/// and libotr's base64.
pub mod gcry {
    use super::{cvt, sys, Error};
    use std::ptr;

    /// AES-128-CTR over `data` in place, with a fresh handle (as libotr
    /// opens one per session key and sets the counter per message).
    pub fn aes128_ctr(key: &[u8; 16], data: &mut [u8]) -> Result<(), Error> {
        let mut h: sys::gcry_cipher_hd_t = ptr::null_mut();
        let ctr = [0u8; 16];
        // SAFETY: the handle is opened, used with buffers that outlive the
        // calls, and closed on every path.
        unsafe {
            cvt(
                sys::gcry_cipher_open(
                    &mut h,
                    sys::gcry_cipher_algos_GCRY_CIPHER_AES as i32,
                    sys::gcry_cipher_modes_GCRY_CIPHER_MODE_CTR as i32,
                    0,
                ),
                "gcry_cipher_open",
            )?;
            let r = cvt(
                sys::gcry_cipher_setkey(h, key.as_ptr().cast(), key.len()),
                "gcry_cipher_setkey",
            )
            .and_then(|()| {
                cvt(
                    sys::gcry_cipher_setctr(h, ctr.as_ptr().cast(), ctr.len()),
                    "gcry_cipher_setctr",
                )
            })
            .and_then(|()| {
                cvt(
                    sys::gcry_cipher_encrypt(
                        h,
                        data.as_mut_ptr().cast(),
                        data.len(),
                        ptr::null(),
                        0,
                    ),
                    "gcry_cipher_encrypt",
                )
            });
            sys::gcry_cipher_close(h);
            r
        }
    }

    /// HMAC with `algo` (`sha1`: true for SHA-1, else SHA-256) over `data`.
    pub fn hmac(sha1: bool, key: &[u8], data: &[u8]) -> Result<Vec<u8>, Error> {
        let algo = if sha1 {
            sys::gcry_md_algos_GCRY_MD_SHA1
        } else {
            sys::gcry_md_algos_GCRY_MD_SHA256
        } as i32;
        let len = if sha1 { 20 } else { 32 };
        let mut h: sys::gcry_md_hd_t = ptr::null_mut();
        // SAFETY: as above; the digest pointer is read before close.
        unsafe {
            cvt(
                sys::gcry_md_open(&mut h, algo, sys::gcry_md_flags_GCRY_MD_FLAG_HMAC),
                "gcry_md_open",
            )?;
            let r = cvt(
                sys::gcry_md_setkey(h, key.as_ptr().cast(), key.len()),
                "gcry_md_setkey",
            )
            .and_then(|()| {
                sys::gcry_md_write(h, data.as_ptr().cast(), data.len());
                let d = sys::gcry_md_read(h, algo);
                if d.is_null() {
                    Err(Error::Backend("gcry_md_read".into()))
                } else {
                    Ok(std::slice::from_raw_parts(d, len).to_vec())
                }
            });
            sys::gcry_md_close(h);
            r
        }
    }

    /// A hash (`sha1`: SHA-1, else SHA-256) of `data`.
    pub fn digest(sha1: bool, data: &[u8]) -> Vec<u8> {
        let (algo, len) = if sha1 {
            (sys::gcry_md_algos_GCRY_MD_SHA1, 20)
        } else {
            (sys::gcry_md_algos_GCRY_MD_SHA256, 32)
        };
        let mut out = vec![0u8; len];
        // SAFETY: `out` has the digest's length.
        unsafe {
            sys::gcry_md_hash_buffer(
                algo as i32,
                out.as_mut_ptr().cast(),
                data.as_ptr().cast(),
                data.len(),
            )
        };
        out
    }

    /// libotr's base64 encoding of `data`.
    pub fn base64_encode(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; data.len().div_ceil(3) * 4 + 1];
        // SAFETY: `out` holds the encoding (4 per 3 bytes, rounded up).
        let n =
            unsafe { sys::otrl_base64_encode(out.as_mut_ptr().cast(), data.as_ptr(), data.len()) };
        out.truncate(n);
        out
    }

    /// libotr's base64 decoding of `text`.
    pub fn base64_decode(text: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; text.len() / 4 * 3 + 3];
        // SAFETY: `out` holds at least 3 bytes per 4 input characters.
        let n =
            unsafe { sys::otrl_base64_decode(out.as_mut_ptr(), text.as_ptr().cast(), text.len()) };
        out.truncate(n);
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn known_answers() {
            // FIPS 180 "abc".
            assert_eq!(
                hex::encode(digest(true, b"abc")),
                "a9993e364706816aba3e25717850c26c9cd0d89d"
            );
            // RFC 2202 test case 2.
            assert_eq!(
                hex::encode(hmac(true, b"Jefe", b"what do ya want for nothing?").unwrap()),
                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
            );
            // CTR is its own inverse.
            let mut d = *b"sixteen byte msg and a tail";
            aes128_ctr(&[1; 16], &mut d).unwrap();
            assert_ne!(&d, b"sixteen byte msg and a tail");
            aes128_ctr(&[1; 16], &mut d).unwrap();
            assert_eq!(&d, b"sixteen byte msg and a tail");
            let e = base64_encode(b"hello world");
            assert_eq!(e, b"aGVsbG8gd29ybGQ=");
            assert_eq!(base64_decode(&e), b"hello world");
        }
    }
}

impl Drop for Primitives {
    fn drop(&mut self) {
        // SAFETY: key pairs filled by otrl_dh_gen_keypair, freed once; the
        // private key belongs to `self.us`, freed with it afterwards.
        unsafe {
            sys::otrl_dh_keypair_free(&mut self.ours);
            sys::otrl_dh_keypair_free(&mut self.theirs);
        }
        let _ = &self.us;
    }
}
