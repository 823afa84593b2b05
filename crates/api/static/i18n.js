// Every string the UI shows, once per language. The browser's language picks the table unless
// the user chose one (kept in localStorage). `{name}` in a string is filled from `vars`.

const en = {
  "nav.wall": "Video wall", "nav.playback": "Playback", "nav.health": "Health", "nav.admin": "Administration",
  "nav.mobile": "Handheld", "nav.logout": "Log out",
  "login.user": "User", "login.password": "Password", "login.submit": "Log in",
  "tree.search": "Search: name, id, org", "tree.none": "No cameras you may see",
  "wall.layout": "Layout", "wall.tour": "Tour", "wall.stopTour": "Stop tour", "wall.save": "Save view",
  "wall.views": "Saved views…", "wall.clear": "Clear", "wall.push": "Put on wall screen",
  "wall.dropHere": "Drag a camera here", "wall.kioskWaiting": "Wall {id}: waiting for a layout",
  "wall.tourTitle": "Camera tour", "wall.tourEvery": "Seconds on each", "wall.tourWhere": "Where",
  "wall.tourWhole": "The whole wall", "wall.tourTile": "Tile {n}", "wall.tourCameras": "Cameras (tick in order)",
  "wall.viewName": "Name", "wall.viewShared": "Share with my department", "wall.screenId": "Wall screen id",
  "tile.offline": "Offline", "tile.noVideo": "No video", "tile.budget": "Link budget refused",
  "tile.codec": "Codec not playable here", "tile.hevcNone": "H.265 only: this browser cannot decode it and the camera has no H.264 sub-stream. Build the node with the gstreamer feature to transcode on the server.",
  "tile.forbidden": "Not allowed", "tile.error": "Error", "tile.retrying": "retrying",
  "ptz.speed": "Speed",
  "pb.cameras": "Cameras (up to 4)", "pb.day": "Day", "pb.jump": "Jump to", "pb.play": "Play", "pb.pause": "Pause",
  "pb.step": "Next frame", "pb.speed": "Speed", "pb.recorded": "recorded", "pb.device": "on the device",
  "pb.hold": "held", "pb.selection": "Selection {from} – {to}", "pb.export": "Export…", "pb.holdCreate": "Hold…",
  "pb.help": "Click the timeline to play from that time; shift-drag to select; wheel to zoom; drag to pan.",
  "pb.pick": "Pick cameras in the tree (click) to see their day.", "pb.remove": "Remove",
  "ev.exportTitle": "Export evidence", "ev.reason": "Reason (required)", "ev.start": "Start export",
  "ev.progress": "Exporting… {p}%", "ev.done": "Export done", "ev.download": "Download package",
  "ev.verified": "Verified: hashes and signature good", "ev.notVerified": "Verification FAILED",
  "ev.holdTitle": "Hold this range", "ev.holds": "Holds", "ev.release": "Release", "ev.releaseReason": "Why release it?",
  "ev.cancel": "Cancel", "ev.create": "Create",
  "health.cameras": "Cameras online", "health.disks": "Disks", "health.retention": "Retention against guarantees",
  "health.alarms": "Alarms", "health.byOrg": "Per organisation", "health.none": "None",
  "admin.users": "Users", "admin.departments": "Departments", "admin.groups": "Groups", "admin.grants": "Grants",
  "admin.tokens": "API tokens", "admin.audit": "Audit log", "admin.create": "Create", "admin.delete": "Delete",
  "admin.chainOk": "Chain intact: {n} entries, head {head}", "admin.chainBad": "Chain BROKEN: {e}",
  "admin.filter": "Filter", "admin.secret": "Secret (shown once): {s}",
  "toast.offline": "{cam} went offline", "toast.online": "{cam} is back", "toast.exportDone": "Export of {cam} done",
  "toast.exportFailed": "Export of {cam} failed: {e}", "toast.disk": "Disk alarm: {m}", "toast.saved": "Saved",
  "m.near": "Near me", "m.all": "My cameras", "m.last": "Last 5 minutes", "m.live": "Live", "m.snapshot": "Snapshot",
  "m.distance": "{d} m",
};

const zh = {
  "nav.wall": "视频墙", "nav.playback": "录像回放", "nav.health": "运行状态", "nav.admin": "系统管理",
  "nav.mobile": "移动端", "nav.logout": "退出",
  "login.user": "用户名", "login.password": "密码", "login.submit": "登录",
  "tree.search": "搜索：名称、编号、组织", "tree.none": "没有可查看的摄像机",
  "wall.layout": "分屏", "wall.tour": "轮巡", "wall.stopTour": "停止轮巡", "wall.save": "保存视图",
  "wall.views": "已存视图…", "wall.clear": "清空", "wall.push": "上墙",
  "wall.dropHere": "把摄像机拖到这里", "wall.kioskWaiting": "电视墙 {id}：等待布局",
  "wall.tourTitle": "摄像机轮巡", "wall.tourEvery": "每路秒数", "wall.tourWhere": "位置",
  "wall.tourWhole": "整面墙", "wall.tourTile": "第 {n} 格", "wall.tourCameras": "摄像机（按顺序勾选）",
  "wall.viewName": "名称", "wall.viewShared": "共享给本部门", "wall.screenId": "电视墙编号",
  "tile.offline": "离线", "tile.noVideo": "无视频", "tile.budget": "链路带宽不足",
  "tile.codec": "此处无法播放该编码", "tile.hevcNone": "仅有 H.265：本浏览器无法解码，且摄像机没有 H.264 子码流。启用 gstreamer 功能编译节点可在服务器端转码。",
  "tile.forbidden": "无权查看", "tile.error": "错误", "tile.retrying": "重试中",
  "ptz.speed": "速度",
  "pb.cameras": "摄像机（最多 4 路）", "pb.day": "日期", "pb.jump": "跳转到", "pb.play": "播放", "pb.pause": "暂停",
  "pb.step": "下一帧", "pb.speed": "倍速", "pb.recorded": "已录像", "pb.device": "设备端录像",
  "pb.hold": "已锁定", "pb.selection": "已选 {from} – {to}", "pb.export": "导出…", "pb.holdCreate": "锁定…",
  "pb.help": "点击时间轴从该时刻播放；按住 Shift 拖动选择；滚轮缩放；拖动平移。",
  "pb.pick": "在左侧目录中点击摄像机查看当天录像。", "pb.remove": "移除",
  "ev.exportTitle": "导出证据", "ev.reason": "事由（必填）", "ev.start": "开始导出",
  "ev.progress": "导出中… {p}%", "ev.done": "导出完成", "ev.download": "下载证据包",
  "ev.verified": "校验通过：哈希与签名正确", "ev.notVerified": "校验失败",
  "ev.holdTitle": "锁定此时段", "ev.holds": "锁定记录", "ev.release": "解除", "ev.releaseReason": "解除原因？",
  "ev.cancel": "取消", "ev.create": "创建",
  "health.cameras": "在线摄像机", "health.disks": "磁盘", "health.retention": "保存期限达标情况",
  "health.alarms": "告警", "health.byOrg": "按组织", "health.none": "无",
  "admin.users": "用户", "admin.departments": "部门", "admin.groups": "分组", "admin.grants": "授权",
  "admin.tokens": "API 令牌", "admin.audit": "审计日志", "admin.create": "创建", "admin.delete": "删除",
  "admin.chainOk": "哈希链完整：{n} 条，链头 {head}", "admin.chainBad": "哈希链损坏：{e}",
  "admin.filter": "筛选", "admin.secret": "密钥（仅显示一次）：{s}",
  "toast.offline": "{cam} 离线", "toast.online": "{cam} 恢复在线", "toast.exportDone": "{cam} 导出完成",
  "toast.exportFailed": "{cam} 导出失败：{e}", "toast.disk": "磁盘告警：{m}", "toast.saved": "已保存",
  "m.near": "附近", "m.all": "我的摄像机", "m.last": "最近 5 分钟", "m.live": "实时", "m.snapshot": "截图",
  "m.distance": "{d} 米",
};

const tables = { en, zh };

export let lang = localStorage.getItem("sharpeye.lang") ||
  ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en");

/** The text for `key` in the current language (English, then the key itself, if missing). */
export function t(key, vars = {}) {
  const s = tables[lang][key] ?? en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ""));
}

/** Fills every `data-i18n` element under `root`. */
export function translate(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}

/** Switches language and remembers it. */
export function setLang(l) {
  lang = tables[l] ? l : "en";
  localStorage.setItem("sharpeye.lang", lang);
  translate();
}

/** Both tables, for the test that they have the same keys. */
export const TABLES = tables;
