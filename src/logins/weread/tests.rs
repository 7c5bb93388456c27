use super::*;

fn now() -> DateTime<Utc> {
    Utc::now()
}

#[test]
fn refresh_token_is_encoded_exactly_once() {
    assert_eq!(encode_once("ab/c+d=="), "ab%2Fc%2Bd%3D%3D");
    assert_eq!(encode_once("ab%2Fc%2Bd%3D%3D"), "ab%2Fc%2Bd%3D%3D");
    assert_eq!(encode_once("plain-token_1"), "plain-token_1");
    assert_eq!(encode_once("50%off"), "50%25off");
}

#[test]
fn uid_shape_is_checked() {
    assert!(valid_uid("abcd-1234"));
    assert!(!valid_uid("short"));
    assert!(!valid_uid("has space in it"));
    assert!(!valid_uid(&"a".repeat(129)));
    assert_eq!(
        qr_text("abcd-1234"),
        "https://weread.qq.com/web/confirm?uid=abcd-1234"
    );
}

#[test]
fn clearing_set_cookies_never_overwrite() {
    let mut jar = WereadJar::from_header("wr_vid=1; wr_skey=good; wr_rt=r");
    let changed = jar.merge_set_cookies(
        [
            "wr_skey=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            "wr_rt=deleted; Max-Age=0",
            "wr_vid=2; Expires=Thu, 01-Jan-1970 00:00:01 GMT",
        ],
        now(),
    );
    assert!(changed.is_empty());
    assert_eq!(jar.get("wr_skey").map(Secret::expose), Some("good"));
    let changed = jar.merge_set_cookies(["wr_skey=new; Path=/; Max-Age=5400"], now());
    assert_eq!(changed, vec!["wr_skey".to_string()]);
    assert_eq!(jar.get("wr_skey").map(Secret::expose), Some("new"));
}

#[test]
fn error_envelope_is_read_at_the_top_or_under_data() {
    let v = serde_json::json!({"errCode": -2012, "errMsg": "登录超时"});
    assert_eq!(error_envelope(&v), Some((-2012, "登录超时".into())));
    let v = serde_json::json!({"data": {"errcode": -12013, "errmsg": "x"}});
    assert_eq!(error_envelope(&v).map(|e| e.0), Some(-12013));
    assert_eq!(error_envelope(&serde_json::json!({"succ": 1})), None);
    assert_eq!(classify(-2013), ErrorKind::RenewalRefused);
}

#[test]
fn timeout_setting_parses() {
    assert_eq!("retry".parse(), Ok(TimeoutMeans::Retry));
    assert_eq!(" Expired ".parse(), Ok(TimeoutMeans::Expired));
    assert!("never".parse::<TimeoutMeans>().is_err());
    let mut c = CascadeConfig::default();
    assert_eq!(
        LoginOptions::from_config(&c).map(|o| o.timeout_means).ok(),
        Some(TimeoutMeans::Retry)
    );
    c.weread_login_timeout_means = "sometimes".into();
    let err = LoginOptions::from_config(&c).expect_err("rejected");
    assert!(err.to_string().contains("weread_login_timeout_means"));
}

#[test]
fn renewal_is_scheduled_well_before_the_key_lapses() {
    let s = RenewalSchedule::from_config(&CascadeConfig::default());
    assert_eq!(s.every, Duration::from_secs(3600));
    let issued = now();
    assert!(!s.is_due(issued, issued + TimeDelta::minutes(59)));
    assert!(s.is_due(issued, issued + TimeDelta::minutes(60)));
    // Longer settings are clamped below the key's estimated life.
    let long = RenewalSchedule::new(Duration::from_secs(7200));
    assert!(long.every < SKEY_LIFETIME);
    assert_eq!(s.retry_at(issued, 1), issued + TimeDelta::minutes(1));
    assert_eq!(s.retry_at(issued, 2), issued + TimeDelta::minutes(2));
    assert_eq!(s.retry_at(issued, 30), issued + TimeDelta::minutes(15));
}

#[test]
fn renewal_outcomes_map_to_steps() {
    let s = RenewalSchedule::new(Duration::from_secs(3600));
    let t = now();
    let jar = WereadJar::from_header("wr_skey=new");
    let step = s.step(
        Ok(RenewOutcome::Renewed {
            jar: jar.clone(),
            skey_expires_at: t,
        }),
        t,
        2,
    );
    assert_eq!(
        step,
        RenewalStep::Save {
            jar,
            skey_expires_at: t,
            next: t + TimeDelta::hours(1)
        }
    );
    let refused = Ok(RenewOutcome::Refused {
        code: -2013,
        message: String::new(),
    });
    assert_eq!(
        s.step(refused, t, 0),
        RenewalStep::RetryAt(t + TimeDelta::minutes(1))
    );
    let net = Err(LoginError::Network("timed out".into()));
    assert_eq!(
        s.step(net, t, 1),
        RenewalStep::RetryAt(t + TimeDelta::minutes(2))
    );
    assert_eq!(
        s.step(Ok(RenewOutcome::Unconfirmed), t, 0),
        RenewalStep::RetryAt(t + TimeDelta::minutes(1))
    );
    let scan = Ok(RenewOutcome::ScanNeeded {
        message: "expired".into(),
    });
    assert!(matches!(s.step(scan, t, 0), RenewalStep::ScanNeeded { .. }));
}

#[test]
fn debug_output_hides_cookie_values() {
    let jar = WereadJar::from_header("wr_vid=123; wr_skey=SKEYVALUE; wr_rt=RTVALUE");
    let login = WereadLogin {
        vid: "123".into(),
        cookies: jar.clone(),
        account_name: "n".into(),
        logged_in_at: now(),
        skey_expires_at: now(),
        rt_expires_at: now(),
    };
    let outcome = RenewOutcome::Renewed {
        jar,
        skey_expires_at: now(),
    };
    for text in [format!("{login:?}"), format!("{outcome:?}")] {
        assert!(
            !text.contains("SKEYVALUE") && !text.contains("RTVALUE"),
            "{text}"
        );
        assert!(text.contains("wr_skey"));
    }
}
