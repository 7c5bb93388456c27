use super::*;

fn at(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("date")
}

#[test]
fn set_cookie_values_and_dates_are_read() {
    let now = at("2026-11-27 12:00:00");
    let c = parse_set_cookie(
        "slave_sid=abc=; Path=/; Expires=Tue, 01 Dec 2026 12:00:00 GMT; Secure; HttpOnly",
        now,
    )
    .expect("cookie");
    assert_eq!((c.name.as_str(), c.value.as_str()), ("slave_sid", "abc="));
    assert_eq!(c.expires, Some(at("2026-12-01 12:00:00")));
    let dashed =
        parse_set_cookie("a=1; expires=Tue, 01-Dec-2026 12:00:00 GMT", now).expect("cookie");
    assert_eq!(dashed.expires, Some(at("2026-12-01 12:00:00")));
    let max_age = parse_set_cookie(
        "a=1; Max-Age=3600; Expires=Tue, 01 Dec 2026 12:00:00 GMT",
        now,
    )
    .expect("cookie");
    assert_eq!(max_age.expires, Some(at("2026-11-27 13:00:00")));
    assert!(parse_set_cookie("novalue", now).is_none());
}

#[test]
fn the_jar_keeps_set_cookies_and_drops_expired_ones() {
    let now = at("2026-11-27 12:00:00");
    let mut headers = reqwest::header::HeaderMap::new();
    for v in [
        "uuid=u1; Path=/",
        "ua_id=x; Path=/",
        "slave_sid=s; Expires=Tue, 01 Dec 2026 12:00:00 GMT",
    ] {
        headers.append(reqwest::header::SET_COOKIE, v.parse().expect("header"));
    }
    let mut jar = Jar::default();
    assert_eq!(jar.absorb(&headers, now).len(), 3);
    let mut next = reqwest::header::HeaderMap::new();
    for v in [
        "uuid=EXPIRED; Path=/",
        "ua_id=y; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        "bizuin=3; Path=/",
    ] {
        next.append(reqwest::header::SET_COOKIE, v.parse().expect("header"));
    }
    let set = jar.absorb(&next, now);
    assert_eq!(
        set.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["bizuin"]
    );
    assert_eq!(jar.header(), "slave_sid=s; bizuin=3");
}

#[test]
fn expiry_falls_back_from_slave_sid_to_slave_user_to_bizuin_to_a_default() {
    let now = at("2026-11-27 12:00:00");
    let c = |name: &str, exp: Option<&str>| Cookie {
        name: name.into(),
        value: "v".into(),
        expires: exp.map(at),
    };
    let day = Duration::from_secs(86_400);
    let all = [
        c("bizuin", Some("2026-11-28 00:00:00")),
        c("slave_user", Some("2026-11-29 00:00:00")),
        c("slave_sid", Some("2026-11-30 00:00:00")),
    ];
    assert_eq!(session_expiry(&all, now, day), at("2026-11-30 00:00:00"));
    assert_eq!(
        session_expiry(&all[..2], now, day),
        at("2026-11-29 00:00:00")
    );
    assert_eq!(
        session_expiry(&all[..1], now, day),
        at("2026-11-28 00:00:00")
    );
    assert_eq!(
        session_expiry(&[c("slave_sid", None)], now, day),
        at("2026-11-28 12:00:00")
    );
}

#[test]
fn the_token_is_only_the_redirect_urls_token_parameter() {
    let t = |u: &str| token_from_redirect(u);
    assert_eq!(
        t("/cgi-bin/home?t=home/index&lang=zh_CN&token=123456789").expect("token"),
        "123456789"
    );
    assert_eq!(
        t("https://mp.weixin.qq.com/cgi-bin/home?token=42&t=x").expect("token"),
        "42"
    );
    assert!(t("/cgi-bin/home?t=home/index&lang=zh_CN").is_err());
    assert!(t("/cgi-bin/home?t=home/index&token=").is_err());
    assert!(
        t("/cgi-bin/home?t=token=5").is_err(),
        "not a substring match"
    );
}

#[test]
fn the_nickname_is_read_from_the_home_page() {
    let page = "<script>wx.cgiData = {};\nwx.cgiData.nick_name = \"Tech \\\"Daily\\\" \\u4e2d\";\n\
                wx.cgiData.head_img = \"x\";</script>";
    assert_eq!(
        nick_name_from_home(page).as_deref(),
        Some("Tech \"Daily\" 中")
    );
    assert_eq!(
        nick_name_from_home("{nick_name: 'Single', x: 1}").as_deref(),
        Some("Single")
    );
    assert_eq!(nick_name_from_home("<title>微信公众平台</title>"), None);
    assert_eq!(nick_name_from_home("nick_name = \"\";"), None);
}
